// Functions whose FIRST instruction is one that an out-of-line copy must relocate or emulate.
// They are written in top-level assembly so the compiler can neither change the first
// instruction nor inline them. Every result is folded into the checksum, so a relocation that
// reads the wrong address, jumps to the wrong place or pushes the wrong return address changes
// the output, and every function is called a different number of times, so probes that get
// mixed up show as wrong counts.
//
// Output (stdout), one fact per line:
//   offset fi_offset <N>      fi_offset+N is the loop body (probe it as SYMBOL+OFF or 0xFILEOFF)
//   count <function> <calls>  for every fi_* function
//   count fi_offset+<N> <n>   how many times the loop body at fi_offset+N ran
//   checksum <16 hex digits>
// Exit code 0; 3 if a function returned something impossible even untraced (a broken build).
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

__asm__(
    ".intel_syntax noprefix\n"
    ".data\n"
    ".p2align 3\n"
    "fi_rip_data: .long 0x1234\n"
    ".section .rodata\n"
    ".p2align 3\n"
    "fi_table: .long 3, 1, 4, 1, 5, 9, 2, 6\n"
    // Read by C so the test and the program agree on where the probed loop body is.
    ".globl fi_offset_delta\n"
    "fi_offset_delta: .quad .Lfi_offset_loop - fi_offset\n"
    ".text\n"

    // RIP-relative load first: a copy run elsewhere must still read fi_rip_data.
    ".globl fi_rip_mov\n.type fi_rip_mov, @function\n.p2align 4\n"
    "fi_rip_mov:\n"
    "    mov eax, DWORD PTR [rip + fi_rip_data]\n"
    "    add eax, edi\n"
    "    mov DWORD PTR [rip + fi_rip_data], eax\n"
    "    ret\n"
    ".size fi_rip_mov, .-fi_rip_mov\n"

    // RIP-relative lea first: the copy must produce the original address, not its own.
    ".globl fi_rip_lea\n.type fi_rip_lea, @function\n.p2align 4\n"
    "fi_rip_lea:\n"
    "    lea rax, [rip + fi_table]\n"
    "    and edi, 7\n"
    "    mov eax, DWORD PTR [rax + rdi*4]\n"
    "    ret\n"
    ".size fi_rip_lea, .-fi_rip_lea\n"

    // jmp rel8 (EB) first, written as bytes so the assembler cannot pick another encoding.
    ".globl fi_jmp8\n.type fi_jmp8, @function\n.p2align 4\n"
    "fi_jmp8:\n"
    "    .byte 0xeb, 0x04\n"          // jmp +4 over the two ud2
    "    ud2\n"
    "    ud2\n"
    "    lea eax, [rdi + 7]\n"
    "    ret\n"
    ".size fi_jmp8, .-fi_jmp8\n"

    // jmp rel32 (E9) first, landing 200 bytes further on.
    ".globl fi_jmp32\n.type fi_jmp32, @function\n.p2align 4\n"
    "fi_jmp32:\n"
    "    .byte 0xe9\n"
    "    .long .Lfi_jmp32_target - .Lfi_jmp32_next\n"
    ".Lfi_jmp32_next:\n"
    "    .fill 200, 1, 0xcc\n"
    ".Lfi_jmp32_target:\n"
    "    lea eax, [rdi + rdi*2 + 5]\n"
    "    ret\n"
    ".size fi_jmp32, .-fi_jmp32\n"

    // call rel32 first. The callee checks that its return address is the original one
    // (a copy that pushes its own address yields 0 instead of 1000).
    ".globl fi_call\n.type fi_call, @function\n.p2align 4\n"
    "fi_call:\n"
    "    call fi_call_helper\n"
    ".Lfi_call_ret:\n"
    "    add eax, edi\n"
    "    ret\n"
    ".size fi_call, .-fi_call\n"
    ".type fi_call_helper, @function\n.p2align 4\n"
    "fi_call_helper:\n"
    "    lea rcx, [rip + .Lfi_call_ret]\n"
    "    xor eax, eax\n"
    "    cmp rcx, QWORD PTR [rsp]\n"
    "    sete al\n"
    "    imul eax, eax, 1000\n"
    "    ret\n"
    ".size fi_call_helper, .-fi_call_helper\n"

    // push first; the pushed value is read back from the stack.
    ".globl fi_push\n.type fi_push, @function\n.p2align 4\n"
    "fi_push:\n"
    "    push rdi\n"
    "    mov rax, QWORD PTR [rsp]\n"
    "    lea eax, [rax + rax*2 + 1]\n"
    "    pop rdi\n"
    "    ret\n"
    ".size fi_push, .-fi_push\n"

    // syscall first. fi_syscall_getpid loads the number and tail-jumps into fi_syscall.
    ".globl fi_syscall_getpid\n.type fi_syscall_getpid, @function\n.p2align 4\n"
    "fi_syscall_getpid:\n"
    "    mov eax, 39\n"                // __NR_getpid
    "    jmp fi_syscall\n"
    ".size fi_syscall_getpid, .-fi_syscall_getpid\n"
    ".globl fi_syscall\n.type fi_syscall, @function\n.p2align 4\n"
    "fi_syscall:\n"
    "    syscall\n"
    "    ret\n"
    ".size fi_syscall, .-fi_syscall\n"

    // A 1-byte function immediately followed by another probed function: no room for a
    // 5-byte patch, and a patch that spills over would corrupt fi_after_ret1.
    ".globl fi_ret1\n.type fi_ret1, @function\n.p2align 4\n"
    "fi_ret1:\n"
    "    ret\n"
    ".size fi_ret1, .-fi_ret1\n"
    ".globl fi_after_ret1\n.type fi_after_ret1, @function\n"
    "fi_after_ret1:\n"
    "    lea eax, [rdi + rdi*4]\n"
    "    ret\n"
    ".size fi_after_ret1, .-fi_after_ret1\n"

    // The loop back-edge lands at offset 2, inside the first 5 bytes. Requires edi > 0.
    ".globl fi_loop\n.type fi_loop, @function\n.p2align 4\n"
    "fi_loop:\n"
    "    xor eax, eax\n"
    ".Lfi_loop_body:\n"
    "    add eax, edi\n"
    "    dec edi\n"
    "    jnz .Lfi_loop_body\n"
    "    ret\n"
    ".size fi_loop, .-fi_loop\n"

    // jz rel8 (74) first. Flags at a function entry are not defined by the ABI, so the
    // entry wrapper sets them (ZF = arg is even) and tail-jumps in.
    ".globl fi_jcc8_entry\n.type fi_jcc8_entry, @function\n.p2align 4\n"
    "fi_jcc8_entry:\n"
    "    test edi, 1\n"
    "    jmp fi_jcc8\n"
    ".size fi_jcc8_entry, .-fi_jcc8_entry\n"
    ".globl fi_jcc8\n.type fi_jcc8, @function\n.p2align 4\n"
    "fi_jcc8:\n"
    "    .byte 0x74, 0x06\n"          // jz +6 (even -> 2*arg)
    "    lea eax, [rdi + 100]\n"      // 3 bytes: odd -> arg + 100
    "    ret\n"                       // 1 byte
    "    ud2\n"                       // 2 bytes of padding keep the even path at +6
    "    lea eax, [rdi + rdi]\n"
    "    ret\n"
    ".size fi_jcc8, .-fi_jcc8\n"

    // jnz rel32 (0F 85) first, with the same flag-setting wrapper (ZF = arg is a multiple of 4).
    ".globl fi_jcc32_entry\n.type fi_jcc32_entry, @function\n.p2align 4\n"
    "fi_jcc32_entry:\n"
    "    test edi, 3\n"
    "    jmp fi_jcc32\n"
    ".size fi_jcc32_entry, .-fi_jcc32_entry\n"
    ".globl fi_jcc32\n.type fi_jcc32, @function\n.p2align 4\n"
    "fi_jcc32:\n"
    "    .byte 0x0f, 0x85\n"
    "    .long .Lfi_jcc32_far - .Lfi_jcc32_next\n"
    ".Lfi_jcc32_next:\n"
    "    lea eax, [rdi + 1000]\n"     // multiple of 4 -> arg + 1000
    "    ret\n"
    "    .fill 300, 1, 0xcc\n"
    ".Lfi_jcc32_far:\n"
    "    lea eax, [rdi*8 + 3]\n"      // otherwise -> 8*arg + 3
    "    ret\n"
    ".size fi_jcc32, .-fi_jcc32\n"

    // jrcxz first: a conditional jump that depends on rcx (the 4th argument), not on flags,
    // and has no rel32 form, so a relocated copy must rewrite it.
    ".globl fi_jrcxz\n.type fi_jrcxz, @function\n.p2align 4\n"
    "fi_jrcxz:\n"
    "    jrcxz .Lfi_jrcxz_zero\n"
    "    lea eax, [rdi + rcx]\n"
    "    ret\n"
    ".Lfi_jrcxz_zero:\n"
    "    mov eax, 77777\n"
    "    ret\n"
    ".size fi_jrcxz, .-fi_jrcxz\n"

    // Probed at an offset: .Lfi_offset_loop (fi_offset + fi_offset_delta) runs edi times per call.
    ".globl fi_offset\n.type fi_offset, @function\n.p2align 4\n"
    "fi_offset:\n"
    "    xor eax, eax\n"
    "    mov ecx, edi\n"
    ".Lfi_offset_loop:\n"
    "    add eax, ecx\n"
    "    dec ecx\n"
    "    jnz .Lfi_offset_loop\n"
    "    ret\n"
    ".size fi_offset, .-fi_offset\n"
    ".att_syntax prefix\n");

extern const uint64_t fi_offset_delta;
int fi_rip_mov(int);
int fi_rip_lea(int);
int fi_jmp8(int);
int fi_jmp32(int);
int fi_call(int);
int fi_push(int);
int fi_syscall_getpid(void);
void fi_ret1(void);
int fi_after_ret1(int);
int fi_loop(int);
int fi_jcc8_entry(int);
int fi_jcc32_entry(int);
int fi_jrcxz(int, int, int, long);
int fi_offset(int);

static uint64_t checksum = 0xcbf29ce484222325ULL;

static void fold(uint64_t value)
{
    checksum = (checksum ^ value) * 0x100000001b3ULL;
}

static void expect(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "firstinsn: %s returned an impossible value\n", what);
        exit(3);
    }
}

int main(void)
{
    // Different primes so a count attributed to the wrong probe never matches by accident.
    enum {
        N_RIP_MOV = 1009, N_RIP_LEA = 1013, N_JMP8 = 1019, N_JMP32 = 1021, N_CALL = 1031,
        N_PUSH = 1033, N_SYSCALL = 1039, N_RET1 = 1049, N_AFTER_RET1 = 1051, N_LOOP = 1061,
        N_JCC8 = 1063, N_JCC32 = 1069, N_JRCXZ = 1087, N_OFFSET = 1091,
    };
    int pid = getpid();
    long offset_iterations = 0;

    for (int i = 0; i < N_RIP_MOV; i++) fold((uint32_t)fi_rip_mov(i));
    for (int i = 0; i < N_RIP_LEA; i++) fold((uint32_t)fi_rip_lea(i));
    for (int i = 0; i < N_JMP8; i++) {
        int r = fi_jmp8(i);
        expect(r == i + 7, "fi_jmp8");
        fold((uint32_t)r);
    }
    for (int i = 0; i < N_JMP32; i++) {
        int r = fi_jmp32(i);
        expect(r == 3 * i + 5, "fi_jmp32");
        fold((uint32_t)r);
    }
    for (int i = 0; i < N_CALL; i++) {
        int r = fi_call(i);
        expect(r == 1000 + i, "fi_call");
        fold((uint32_t)r);
    }
    for (int i = 0; i < N_PUSH; i++) {
        int r = fi_push(i);
        expect(r == 3 * i + 1, "fi_push");
        fold((uint32_t)r);
    }
    for (int i = 0; i < N_SYSCALL; i++) {
        int r = fi_syscall_getpid();
        expect(r == pid, "fi_syscall_getpid");
        fold(r == pid);
    }
    for (int i = 0; i < N_RET1; i++) fi_ret1();
    for (int i = 0; i < N_AFTER_RET1; i++) fold((uint32_t)fi_after_ret1(i));
    for (int i = 0; i < N_LOOP; i++) {
        int n = i % 13 + 1;
        int r = fi_loop(n);
        expect(r == n * (n + 1) / 2, "fi_loop");
        fold((uint32_t)r);
    }
    for (int i = 0; i < N_JCC8; i++) {
        int r = fi_jcc8_entry(i);
        expect(r == (i % 2 == 0 ? 2 * i : i + 100), "fi_jcc8");
        fold((uint32_t)r);
    }
    for (int i = 0; i < N_JCC32; i++) {
        int r = fi_jcc32_entry(i);
        expect(r == (i % 4 == 0 ? i + 1000 : 8 * i + 3), "fi_jcc32");
        fold((uint32_t)r);
    }
    for (int i = 0; i < N_JRCXZ; i++) {
        long rcx = i % 3 == 0 ? 0 : i;
        int r = fi_jrcxz(i, 0, 0, rcx);
        expect(r == (rcx == 0 ? 77777 : i + (int)rcx), "fi_jrcxz");
        fold((uint32_t)r);
    }
    for (int i = 0; i < N_OFFSET; i++) {
        int n = i % 7 + 1;
        int r = fi_offset(n);
        expect(r == n * (n + 1) / 2, "fi_offset");
        offset_iterations += n;
        fold((uint32_t)r);
    }

    printf("offset fi_offset %" PRIu64 "\n", fi_offset_delta);
    printf("count fi_rip_mov %d\n", N_RIP_MOV);
    printf("count fi_rip_lea %d\n", N_RIP_LEA);
    printf("count fi_jmp8 %d\n", N_JMP8);
    printf("count fi_jmp32 %d\n", N_JMP32);
    printf("count fi_call %d\n", N_CALL);
    printf("count fi_push %d\n", N_PUSH);
    printf("count fi_syscall_getpid %d\n", N_SYSCALL);
    printf("count fi_syscall %d\n", N_SYSCALL);
    printf("count fi_ret1 %d\n", N_RET1);
    printf("count fi_after_ret1 %d\n", N_AFTER_RET1);
    printf("count fi_loop %d\n", N_LOOP);
    printf("count fi_jcc8_entry %d\n", N_JCC8);
    printf("count fi_jcc8 %d\n", N_JCC8);
    printf("count fi_jcc32_entry %d\n", N_JCC32);
    printf("count fi_jcc32 %d\n", N_JCC32);
    printf("count fi_jrcxz %d\n", N_JRCXZ);
    printf("count fi_offset %d\n", N_OFFSET);
    printf("count fi_offset+%" PRIu64 " %ld\n", fi_offset_delta, offset_iterations);
    printf("checksum %016" PRIx64 "\n", checksum);
    return 0;
}
