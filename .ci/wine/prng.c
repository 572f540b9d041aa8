/*
 * bcryptprimitives.dll for Wine 8.0, which lacks it.
 *
 * Go 1.22 and later Windows binaries take their random numbers from
 * ProcessPrng in bcryptprimitives.dll and refuse to start without it. This
 * stand-in exports ProcessPrng and fills the buffer from RtlGenRandom
 * (SystemFunction036 in advapi32), which Wine has long had. Since every Go
 * process loads this DLL at start-up, it also carries the fix in
 * deletefix.c. It is for running the test suite under Wine only, never
 * shipped.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
	while (len > 0) {
		ULONG n = len > 0x40000000 ? 0x40000000 : (ULONG)len;
		if (!SystemFunction036(data, n))
			return FALSE;
		data += n;
		len -= n;
	}
	return TRUE; /* the real one never fails either */
}

void fix_delete(void);

BOOL WINAPI DllMain(HINSTANCE inst, DWORD reason, LPVOID reserved)
{
	(void)inst;
	(void)reserved;
	if (reason == DLL_PROCESS_ATTACH)
		fix_delete();
	return TRUE;
}
