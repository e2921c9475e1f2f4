// A program that keeps calling dlopen and exec after its tracer is gone. uprec's own hooks (the
// loader's _dl_debug_state, libc's execve) must not be bare int3s then, or the first dlopen or exec
// after uprec was SIGKILLed ends the program with SIGTRAP.
//
// Usage: inproc_hooks [ROUNDS [nowait]]   (default 20; nowait: run the rounds at once, untraced)
// stdout: ready <pid>                  once, flushed, after hwork's first call
//         patched                      flushed, once hwork's first byte is a jmp (0xe9): uprec attached
//         count hwork <calls>          after the rounds
//         checksum <16 hex digits>
// It waits for SIGUSR1 after "patched" (the test kills uprec, then sends it), then runs ROUNDS
// rounds of: dlopen+dlclose libm, fork + execve /bin/true (waited for), 1000 calls of hwork.
// Exit code 0; 3 if a child failed; 4 if it was not patched or not signalled within 30 s.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t go;
static void on_go(int sig) { (void)sig; go = 1; }

__attribute__((noinline, noclone)) uint64_t hwork(uint64_t x)
{
    __asm__ volatile("" : "+r"(x));
    return x * 2654435761u + 1;
}

static int waited_too_long(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec - start->tv_sec > 30;
}

int main(int argc, char **argv)
{
    long rounds = argc > 1 ? atol(argv[1]) : 20;
    signal(SIGUSR1, on_go);
    uint64_t checksum = 0;
    long calls = 0;
    checksum += hwork(0);
    calls++;
    printf("ready %d\n", (int)getpid());
    fflush(stdout);
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    int wait = argc <= 2;
    while (wait && *(volatile unsigned char *)(void *)&hwork != 0xe9) {
        checksum += hwork((uint64_t)calls++);
        if (waited_too_long(&start)) return 4;
    }
    if (wait) {
        printf("patched\n");
        fflush(stdout);
    }
    while (wait && !go) {
        checksum += hwork((uint64_t)calls++);
        if (waited_too_long(&start)) return 4;
    }
    for (long r = 0; r < rounds; r++) {
        void *h = dlopen("libm.so.6", RTLD_NOW | RTLD_LOCAL);
        if (h) dlclose(h);
        pid_t child = fork();
        if (child == 0) {
            char *args[] = { "true", NULL };
            execve("/bin/true", args, environ);
            _exit(127);
        }
        int status = 0;
        if (child < 0 || waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return 3;
        for (int i = 0; i < 1000; i++) checksum += hwork((uint64_t)(r * 1000 + i));
    }
    // The calls before "go" depend on timing; the checksum covers only the fixed rounds.
    uint64_t fixed = 0;
    for (long r = 0; r < rounds; r++)
        for (int i = 0; i < 1000; i++) fixed += hwork((uint64_t)(r * 1000 + i));
    printf("count hwork_rounds %ld\n", rounds * 1000);
    printf("checksum %016" PRIx64 "\n", fixed);
    (void)checksum;
    return 0;
}
