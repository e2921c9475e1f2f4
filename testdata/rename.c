// Calls rn_work while named "rename", renames itself with prctl(PR_SET_NAME) and calls it again:
// a --filter over comm must follow the rename (uprec re-decides once a second, so the program
// pauses 1.5 s after renaming before it calls again).
//
// stdout: count rn_work <all calls>
//         count rn_work_as_rename <calls before the rename>
//         count rn_work_as_renamed <calls after the rename>
//         checksum <16 hex digits>
// Exit code 0.
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <unistd.h>

enum { BEFORE = 11, AFTER = 7 };

__attribute__((noinline, noclone)) uint64_t rn_work(uint64_t x)
{
    __asm__ volatile("" : "+r"(x));
    return x * 2654435761u + 1;
}

int main(void)
{
    uint64_t sum = 0;
    for (int i = 0; i < BEFORE; i++)
        sum += rn_work((uint64_t)i);
    prctl(PR_SET_NAME, "renamed", 0, 0, 0);
    usleep(1500000);
    for (int i = 0; i < AFTER; i++)
        sum += rn_work((uint64_t)i + 100);
    printf("count rn_work %d\ncount rn_work_as_rename %d\ncount rn_work_as_renamed %d\nchecksum %016" PRIx64 "\n",
           BEFORE + AFTER, BEFORE, AFTER, sum);
    return 0;
}
