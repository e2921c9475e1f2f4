// Probes that follow the file across fork, vfork and exec.
// The parent calls fe_work, forks a child that calls fe_work too and then execs forkexec_child
// (which calls its own child_work), and then vforks a child that execs forkexec_child at once.
// forkexec_child is looked up next to this program (/proc/self/exe).
//
// stdout: count fe_work <calls in parent + forked child>
//         count fe_work_parent <calls in the parent>
//         count fe_work_child <calls in the forked child before its exec>
//         count child_work <calls in both exec'd programs>
//         processes 3            (parent, forked child, vforked child)
//         checksum <16 hex digits>
// Exit code 0; 3 if a child failed.
#define _GNU_SOURCE
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

enum { N_PARENT = 1001, N_FORKED = 503, N_EXEC_FORK = 307, N_EXEC_VFORK = 211 };

__attribute__((noinline, noclone)) uint64_t fe_work(uint64_t x)
{
    __asm__ volatile("" : "+r"(x));
    return x * 0x9e3779b97f4a7c15ULL + 1;
}

static int wait_ok(pid_t pid)
{
    int status;
    return waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

int main(void)
{
    char self[PATH_MAX], child[PATH_MAX + 32];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n < 0) { perror("readlink"); return 3; }
    self[n] = 0;
    snprintf(child, sizeof child, "%s/forkexec_child", dirname(self));

    uint64_t checksum = 0;
    for (int i = 0; i < N_PARENT; i++)
        checksum += fe_work((uint64_t)i);

    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        uint64_t sum = 0;
        for (int i = 0; i < N_FORKED; i++)
            sum += fe_work((uint64_t)i);
        char count[32];
        snprintf(count, sizeof count, "%d", N_EXEC_FORK);
        // The sum travels as the child's exit code check: forkexec_child exits 0 only if told so.
        execl(child, "forkexec_child", count, sum == 0 ? "bad" : "ok", (char *)NULL);
        _exit(127);
    }
    if (pid < 0 || !wait_ok(pid)) { fprintf(stderr, "forkexec: forked child failed\n"); return 3; }

    char vcount[32];
    snprintf(vcount, sizeof vcount, "%d", N_EXEC_VFORK);
    pid = vfork();
    if (pid == 0) {
        execl(child, "forkexec_child", vcount, "ok", (char *)NULL);
        _exit(127);
    }
    if (pid < 0 || !wait_ok(pid)) { fprintf(stderr, "forkexec: vforked child failed\n"); return 3; }

    printf("count fe_work %d\n", N_PARENT + N_FORKED);
    printf("count fe_work_parent %d\n", N_PARENT);
    printf("count fe_work_child %d\n", N_FORKED);
    printf("count child_work %d\n", N_EXEC_FORK + N_EXEC_VFORK);
    printf("processes 3\n");
    printf("checksum %016" PRIx64 "\n", checksum);
    return 0;
}
