// A process that calls a probed function, forks, and calls it on both sides. A tracer whose
// samples and counters live in the process's own memory hands the child a copy of the parent's
// (fork copies private mappings): the parent's calls made before the fork must be counted once,
// for the parent, and the child's calls for the child.
//
// Usage: inproc_fork [BEFORE [CHILD [AFTER]]]   (defaults 3001, 2003, 1009)
//   the parent calls forked BEFORE times, forks; the child calls it CHILD times and exits 0;
//   the parent calls it AFTER times, then waits for the child.
// stdout:  count forked <total calls of both processes>
//          checksum <16 hex digits>           (the parent's and the child's results)
// stderr:  task <pid> forked <calls>          parent and child, one line each
// Exit code 0; 2 on a bad argument; 3 if fork failed or the child did not exit 0.
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

__attribute__((noinline, noclone)) uint64_t forked(uint64_t x)
{
    __asm__ volatile("" : "+r"(x));
    return x * 0xc4ceb9fe1a85ec53ULL + 11;
}

static uint64_t calls_of(long n, uint64_t seed)
{
    uint64_t sum = 0;
    for (long i = 0; i < n; i++)
        sum = sum * 31 + forked((uint64_t)i + seed);
    return sum;
}

int main(int argc, char **argv)
{
    long before = argc > 1 ? atol(argv[1]) : 3001;
    long child_calls = argc > 2 ? atol(argv[2]) : 2003;
    long after = argc > 3 ? atol(argv[3]) : 1009;
    if (before < 0 || child_calls < 0 || after < 0) {
        fprintf(stderr, "usage: inproc_fork [BEFORE [CHILD [AFTER]]] (calls, >= 0)\n");
        return 2;
    }
    uint64_t checksum = calls_of(before, 0);
    // Nothing buffered may be duplicated into the child's stdio.
    fflush(stdout);
    fflush(stderr);
    int fds[2];
    if (pipe(fds) != 0) {
        perror("pipe");
        return 3;
    }
    pid_t child = fork();
    if (child < 0) {
        perror("fork");
        return 3;
    }
    if (child == 0) {
        close(fds[0]);
        uint64_t sum = calls_of(child_calls, 1u << 20);
        fprintf(stderr, "task %d forked %ld\n", (int)getpid(), child_calls);
        // The child's result goes to the parent, so stdout has one checksum for both.
        if (write(fds[1], &sum, sizeof sum) != (ssize_t)sizeof sum)
            _exit(4);
        _exit(0);
    }
    close(fds[1]);
    checksum = checksum * 31 + calls_of(after, 1u << 21);
    uint64_t child_sum = 0;
    ssize_t got = read(fds[0], &child_sum, sizeof child_sum);
    int status = 0;
    waitpid(child, &status, 0);
    if (got != (ssize_t)sizeof child_sum || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "inproc_fork: the child failed (status %d)\n", status);
        return 3;
    }
    checksum = checksum * 31 + child_sum;
    fprintf(stderr, "task %d forked %ld\n", (int)getpid(), before + after);
    printf("count forked %ld\n", before + child_calls + after);
    printf("checksum %016" PRIx64 "\n", checksum);
    return 0;
}
