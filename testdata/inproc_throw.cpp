// A C++ program that keeps throwing through a %return-probed frame, and asking for backtraces from
// inside it, after its tracer is gone. The probed frame's return address is uprec's return
// trampoline; the unwinder must still see the real one, or the throw ends in std::terminate. While
// uprec lives it puts them back at its unwinder hooks; once it is SIGKILLed, the hooks must do it
// themselves.
//
// Usage: inproc_throw [ROUNDS [nowait]]   (default 2000; nowait: run the rounds at once, untraced)
// stdout: ready <pid>                  once, flushed, after tw_middle's first call
//         patched                      flushed, once tw_middle's first byte is a jmp (0xe9)
//         count tw_middle_rounds <calls>   calls of tw_middle in the rounds
//         caught <n>                   exceptions caught in the rounds (one in three calls)
//         frames <n>                   frames found by the backtraces (one in ten calls of the
//                                      rounds), summed: a hijacked return address would cut one short
//         checksum <16 hex digits>
// It waits for SIGUSR1 after "patched" (the test kills uprec, then sends it), then runs ROUNDS calls.
// While it waits, its calls neither throw nor take a backtrace: those stop at uprec's unwinder
// hooks, and a thread in a ptrace stop when its tracer is SIGKILLed gets the stop's SIGTRAP
// (README, known limits). Throws while uprec lives are testdata/cxxthrow.cpp's part.
// Exit code 0; 4 if it was not patched or not signalled within 30 s.
#include <cinttypes>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <execinfo.h>
#include <stdexcept>
#include <unistd.h>

static volatile sig_atomic_t go;
static void on_go(int) { go = 1; }
static long frames;
static int in_rounds;

__attribute__((noinline)) static uint64_t tw_thrower(uint64_t x)
{
    __asm__ volatile("" : "+r"(x));
    if (x % 3 == 0) throw std::runtime_error("three");
    return x * 7;
}

extern "C" __attribute__((noinline)) uint64_t tw_middle(uint64_t x)
{
    __asm__ volatile("" : "+r"(x));
    if (in_rounds && x % 10 == 0) {
        void *found[64];
        frames += backtrace(found, 64);
    }
    uint64_t r = tw_thrower(x) + 1;
    __asm__ volatile("" : "+r"(r));
    return r;
}

__attribute__((noinline)) static uint64_t tw_outer(uint64_t x, long *caught)
{
    try {
        return tw_middle(x);
    } catch (const std::runtime_error &) {
        ++*caught;
        return 1000 + x;
    }
}

static int waited_too_long(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec - start->tv_sec > 30;
}

int main(int argc, char **argv)
{
    long rounds = argc > 1 ? atol(argv[1]) : 2000;
    signal(SIGUSR1, on_go);
    long caught = 0, calls = 1;
    uint64_t checksum = tw_outer(1, &caught);
    printf("ready %d\n", (int)getpid());
    fflush(stdout);
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    int wait = argc <= 2;
    // 3k+1 never throws.
    while (wait && *(volatile unsigned char *)(void *)&tw_middle != 0xe9) {
        checksum += tw_outer(3 * (uint64_t)calls++ + 1, &caught);
        if (waited_too_long(&start)) return 4;
    }
    if (wait) {
        printf("patched\n");
        fflush(stdout);
    }
    while (wait && !go) {
        checksum += tw_outer(3 * (uint64_t)calls++ + 1, &caught);
        if (waited_too_long(&start)) return 4;
    }
    // The calls before "go" depend on timing; the results cover only the fixed rounds.
    caught = 0;
    frames = 0;
    in_rounds = 1;
    uint64_t fixed = 0;
    for (long i = 0; i < rounds; i++) fixed = fixed * 31 + tw_outer((uint64_t)i, &caught);
    printf("count tw_middle_rounds %ld\n", rounds);
    printf("caught %ld\n", caught);
    printf("frames %ld\n", frames);
    printf("checksum %016" PRIx64 "\n", fixed);
    (void)checksum;
    return 0;
}
