/*
 * Go 1.25+ deletes files (os.Remove's fallback, os.RemoveAll, and so
 * testing's TempDir cleanup) with NtSetInformationFile and the class
 * FileDispositionInformationEx (64), and falls back to the old class when the
 * system answers STATUS_INVALID_INFO_CLASS. Wine 8.0 lacks that class but
 * answers STATUS_NOT_IMPLEMENTED, which Go reports as "Invalid function", so
 * every test that uses t.TempDir fails under it.
 *
 * This file, linked into the stand-in bcryptprimitives.dll that every Go
 * process loads at start-up, fixes the answer: when the DLL is loaded it
 * redirects ntdll's NtSetInformationFile to a wrapper that answers class 64
 * with STATUS_INVALID_INFO_CLASS and passes every other call to a copy of
 * the original system-call stub. It touches nothing unless the stub is
 * exactly the one Wine 8.0 ships (32 position-independent bytes), so on any
 * other system it does nothing.
 */
#include <windows.h>
#include <string.h>

typedef LONG(NTAPI *set_info_fn)(HANDLE, PVOID, PVOID, ULONG, ULONG);

static set_info_fn original;

#define FileDispositionInformationEx 64
#define STATUS_INVALID_INFO_CLASS ((LONG)0xC0000003)

static LONG NTAPI set_info(HANDLE h, PVOID iosb, PVOID info, ULONG len, ULONG cls)
{
	if (cls == FileDispositionInformationEx)
		return STATUS_INVALID_INFO_CLASS;
	return original(h, iosb, info, len, cls);
}

/* Wine 8.0's x86-64 stub: mov %rcx,%r10; mov $N,%eax; testb $1,0x7ffe0308;
 * jne +3; syscall; ret; jmp +1; ret; call *0x7ffe1000; ret. */
static const unsigned char head[] = {0x4c, 0x8b, 0xd1, 0xb8};
static const unsigned char tail[] = {
	0xf6, 0x04, 0x25, 0x08, 0x03, 0xfe, 0x7f, 0x01, 0x75, 0x03, 0x0f, 0x05,
	0xc3, 0xeb, 0x01, 0xc3, 0xff, 0x14, 0x25, 0x00, 0x10, 0xfe, 0x7f, 0xc3,
};
#define STUB_SIZE 32

void fix_delete(void)
{
	HMODULE ntdll = GetModuleHandleA("ntdll.dll");
	unsigned char *fn;
	unsigned char *copy;
	unsigned char jump[12] = {0x48, 0xb8}; /* movabs $set_info,%rax; jmp *%rax */
	DWORD old;
	UINT_PTR target = (UINT_PTR)set_info;

	if (!ntdll)
		return;
	fn = (unsigned char *)GetProcAddress(ntdll, "NtSetInformationFile");
	if (!fn || memcmp(fn, head, sizeof head) != 0 || memcmp(fn + 8, tail, sizeof tail) != 0)
		return;
	copy = VirtualAlloc(NULL, STUB_SIZE, MEM_COMMIT | MEM_RESERVE, PAGE_EXECUTE_READWRITE);
	if (!copy)
		return;
	memcpy(copy, fn, STUB_SIZE);
	original = (set_info_fn)copy;
	memcpy(jump + 2, &target, sizeof target);
	jump[10] = 0xff;
	jump[11] = 0xe0;
	if (!VirtualProtect(fn, sizeof jump, PAGE_EXECUTE_READWRITE, &old))
		return;
	memcpy(fn, jump, sizeof jump);
	VirtualProtect(fn, sizeof jump, old, &old);
	FlushInstructionCache(GetCurrentProcess(), fn, sizeof jump);
}
