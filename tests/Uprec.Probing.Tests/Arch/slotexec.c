/* Runs slot code produced by TrapPlanner on the real CPU, as ground truth for the planner's tests.
 *
 * stdin, one command per line (hex numbers without 0x):
 *   map ADDR SIZE       map ADDR..ADDR+SIZE read/write/execute at exactly ADDR (fails if anything is there)
 *   put ADDR HEXBYTES   copy bytes to ADDR
 *   run ENTRY           call ENTRY as uint64_t (*)(void), then print "rax=HEX pid=DEC"
 *   fsbase ADDR         print "fs=HEX", this thread's fs base as the kernel reports it (arch_prctl, not
 *                       rdfsbase, so the trampoline's rdfsbase is checked against an independent source),
 *                       and store it at ADDR unless ADDR is 0
 *   dump ADDR SIZE      print "mem=HEX" with the SIZE bytes at ADDR
 *   sigcall AT ENTRY    on SIGTRAP (code run with the trap flag set traps after every instruction), the
 *                       first time the interrupted rip is AT call ENTRY from the handler, as a signal
 *                       handler that reaches a probe would, then clear the trap flag; print "fired=0|1" at exit
 * Exit status 3 with a message on stderr when the layout cannot be set up. A crash of the code under
 * test kills the harness with that signal, which the test reports.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <asm/prctl.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

static uint64_t sigcall_at, sigcall_entry;
static volatile sig_atomic_t sigcall_fired;

static void on_trap(int sig, siginfo_t *info, void *context) {
    (void)sig;
    (void)info;
    ucontext_t *uc = context;
    if (sigcall_fired || (uint64_t)uc->uc_mcontext.gregs[REG_RIP] != sigcall_at) return;
    sigcall_fired = 1;
    ((uint64_t (*)(void))sigcall_entry)();
    uc->uc_mcontext.gregs[REG_EFL] &= ~0x100L;
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int main(void) {
    static char line[65536];
    while (fgets(line, sizeof line, stdin)) {
        char cmd[8];
        uint64_t addr, size;
        int used = 0;
        if (sscanf(line, "%7s %" SCNx64 " %n", cmd, &addr, &used) < 2) continue;
        if (strcmp(cmd, "map") == 0) {
            if (sscanf(line + used, "%" SCNx64, &size) != 1) { fprintf(stderr, "map: no size\n"); return 3; }
            void *p = mmap((void *)addr, size, PROT_READ | PROT_WRITE | PROT_EXEC,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
            if (p == MAP_FAILED || (uint64_t)p != addr) {
                fprintf(stderr, "map %" PRIx64 ": %s\n", addr, strerror(errno));
                return 3;
            }
        } else if (strcmp(cmd, "put") == 0) {
            unsigned char *dst = (unsigned char *)addr;
            for (const char *s = line + used; hexval(s[0]) >= 0 && hexval(s[1]) >= 0; s += 2)
                *dst++ = (unsigned char)(hexval(s[0]) << 4 | hexval(s[1]));
        } else if (strcmp(cmd, "run") == 0) {
            uint64_t (*entry)(void) = (uint64_t (*)(void))addr;
            uint64_t rax = entry();
            printf("rax=%" PRIx64 " pid=%d\n", rax, (int)getpid());
            fflush(stdout);
        } else if (strcmp(cmd, "fsbase") == 0) {
            uint64_t fs = 0;
            if (syscall(SYS_arch_prctl, ARCH_GET_FS, &fs) != 0) { fprintf(stderr, "arch_prctl: %s\n", strerror(errno)); return 3; }
            if (addr != 0) memcpy((void *)addr, &fs, sizeof fs);
            printf("fs=%" PRIx64 "\n", fs);
            fflush(stdout);
        } else if (strcmp(cmd, "sigcall") == 0) {
            if (sscanf(line + used, "%" SCNx64, &sigcall_entry) != 1) { fprintf(stderr, "sigcall: no entry\n"); return 3; }
            sigcall_at = addr;
            struct sigaction sa;
            memset(&sa, 0, sizeof sa);
            sa.sa_sigaction = on_trap;
            sa.sa_flags = SA_SIGINFO;
            if (sigaction(SIGTRAP, &sa, NULL) != 0) { fprintf(stderr, "sigaction: %s\n", strerror(errno)); return 3; }
        } else if (strcmp(cmd, "dump") == 0) {
            if (sscanf(line + used, "%" SCNx64, &size) != 1) { fprintf(stderr, "dump: no size\n"); return 3; }
            static const char digits[] = "0123456789ABCDEF";
            const unsigned char *src = (const unsigned char *)addr;
            fputs("mem=", stdout);
            for (uint64_t i = 0; i < size; i++) {
                putchar(digits[src[i] >> 4]);
                putchar(digits[src[i] & 15]);
            }
            putchar('\n');
            fflush(stdout);
        } else {
            fprintf(stderr, "unknown command %s\n", cmd);
            return 3;
        }
    }
    if (sigcall_at != 0) printf("fired=%d\n", (int)sigcall_fired);
    return 0;
}
