// A %return-probed function that calls backtrace(): the unwinder must see real return addresses
// (the program checks that its own frames appear in the trace it gets), and the probe must still
// time every call that returns.
//
// stdout: count bt_work <calls>
//         returns bt_work <calls that returned>
//         frames_ok <calls whose backtrace() reached main>
//         checksum <16 hex digits>
// Exit code 0.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <execinfo.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

enum { N = 25 };
static long returned, frames_ok;

// The index of main's frame in what backtrace() returns (built with -rdynamic, so dladdr names it), or -1.
__attribute__((noinline, noclone)) static int depth_of_main(void)
{
    void *frames[64];
    int n = backtrace(frames, 64);
    for (int i = 0; i < n; i++)
    {
        Dl_info info;
        if (dladdr(frames[i], &info) && info.dli_sname && strcmp(info.dli_sname, "main") == 0)
            return i;
    }
    return -1;
}

__attribute__((noinline, noclone)) uint64_t bt_work(uint64_t x)
{
    __asm__ volatile("" : "+r"(x));
    if (depth_of_main() > 0)
        frames_ok++;
    returned++;
    return x * 3 + 1;
}

int main(void)
{
    uint64_t sum = 0;
    for (int i = 0; i < N; i++)
        sum += bt_work((uint64_t)i);
    printf("count bt_work %d\nreturns bt_work %ld\nframes_ok %ld\nchecksum %016" PRIx64 "\n", N, returned, frames_ok, sum);
    return 0;
}
