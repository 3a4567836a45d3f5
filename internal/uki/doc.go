// Package uki assembles and reads Unified Kernel Images: an EFI stub (a PE32+
// image such as systemd's linuxx64.efi.stub) with the kernel, initramfs,
// command line and metadata appended as PE sections, following the UAPI
// Group's UKI specification and the layout systemd's ukify produces.
//
// [Build] appends, in ukify's order, .osrel, .cmdline, .uname, .linux and
// .initrd, and merges SBAT data into the stub's .sbat section in place (or
// appends a .sbat section when the stub has none). The layout rules, checked
// against ukify 257 and the x86_64 and aarch64 systemd 257 stubs:
//
//   - a new section's RVA is the end (RVA + VirtualSize) of the previous
//     section rounded up to the stub's SectionAlignment;
//   - VirtualSize is the payload length; raw data is padded to FileAlignment
//     and laid out contiguously after the stub's last section;
//   - .linux is marked code|read (0x40000020), the others initialized
//     data|read (0x40000040); SizeOfCode and SizeOfInitializedData grow by the
//     virtual sizes added, SizeOfImage covers the last section, and the PE
//     checksum is computed (ukify leaves it 0);
//   - a trailing COFF symbol table (old gnu-efi stubs) is dropped and
//     PointerToSymbolTable/NumberOfSymbols zeroed, because Authenticode
//     signers refuse data after the last section;
//   - NX_COMPAT is cleared when the embedded kernel lacks it, as ukify does;
//   - an already signed stub, a stub without room for the new section headers,
//     and unaligned stub sections are refused.
//
// The output depends only on the inputs: the same stub and payloads give the
// same bytes. Only PE32+ stubs (x86_64, aarch64, riscv64, loongarch64) are
// supported; profiles, .dtb, .ucode, .splash and PCR signatures are out of
// scope.
//
// [NewFile] and [Open] read a UKI back: the section table, the command line,
// os-release, uname and the composefs digest on the command line.
//
// # Security
//
// The reader uses debug/pe, which is not hardened against hostile input, and
// bounds every section read by the file size. Building trusts the stub only
// as far as copying it; it is not executed or verified.
package uki
