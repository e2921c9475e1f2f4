// Calls libc functions a known number of times, for probes given as `libc:SYMBOL`.
// getppid and umask are used because neither the dynamic loader nor libc's start-up code nor
// stdio calls them, so the program's own calls are all the calls.
//
// stdout: count getppid <calls>
//         count umask <calls>
//         checksum <16 hex digits>   (independent of the actual parent pid)
// Exit code 0.
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

int main(void)
{
    enum { N_GETPPID = 2003, N_UMASK = 1201 };
    uint64_t checksum = 0;
    pid_t first = getppid();
    for (int i = 1; i < N_GETPPID; i++)
        checksum = checksum * 3 + (getppid() == first);
    for (int i = 0; i < N_UMASK; i++)
        checksum = checksum * 5 + (uint64_t)umask((mode_t)(i & 077));
    printf("count getppid %d\n", N_GETPPID);
    printf("count umask %d\n", N_UMASK);
    printf("checksum %016" PRIx64 "\n", checksum);
    return 0;
}
