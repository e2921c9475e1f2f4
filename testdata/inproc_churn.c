// Threads that come and go while calling a probed function. Threads started one after another
// usually get the previous thread's stack and TCB again from glibc's cache, so the same fs base
// (a tracer's cheap thread identity) belongs to several threads in turn: each call must still be
// attributed to the thread that made it, and the records a thread leaves when it exits must not
// be lost or handed to the next one. Every thread makes a different number of calls, so a
// misattributed call shows as two wrong per-thread counts.
//
// Usage: inproc_churn [SEQUENTIAL [PAIRS]]   (defaults 8 and 4)
//   SEQUENTIAL threads run one at a time (each joined before the next starts), then PAIRS rounds
//   of two threads running at once; the main thread calls the function MAIN_CALLS times first.
// stdout:  count churn <total calls>
//          threads <tasks that called churn, main thread included>
//          checksum <16 hex digits>
// stderr:  task <tid> churn <calls>     one line per task (tids differ between runs)
// Exit code 0; 2 on a bad argument; 3 if a thread could not be created.
#define _GNU_SOURCE
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

enum { MAIN_CALLS = 5, MAX_THREADS = 128 };

struct worker {
    pthread_t thread;
    long calls;
    pid_t tid;
    uint64_t sum;
};

__attribute__((noinline, noclone)) uint64_t churn(uint64_t x)
{
    __asm__ volatile("" : "+r"(x));
    return (x << 7) ^ (x * 0xff51afd7ed558ccdULL);
}

static void *run_worker(void *arg)
{
    struct worker *w = arg;
    w->tid = (pid_t)syscall(SYS_gettid);
    uint64_t sum = 0;
    for (long i = 0; i < w->calls; i++)
        sum += churn((uint64_t)i + (uint64_t)w->calls);
    w->sum = sum;
    return NULL;
}

static struct worker workers[MAX_THREADS];
static int started;

static int start(long calls)
{
    struct worker *w = &workers[started++];
    // Distinct counts, all far below what a per-thread ring of samples holds.
    w->calls = calls;
    if (pthread_create(&w->thread, NULL, run_worker, w) != 0) {
        perror("pthread_create");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    int sequential = argc > 1 ? atoi(argv[1]) : 8;
    int pairs = argc > 2 ? atoi(argv[2]) : 4;
    if (sequential < 0 || pairs < 0 || sequential + 2 * pairs > MAX_THREADS) {
        fprintf(stderr, "usage: inproc_churn [SEQUENTIAL [PAIRS]] (at most %d threads in all)\n", MAX_THREADS);
        return 2;
    }
    uint64_t checksum = 0;
    for (int i = 0; i < MAIN_CALLS; i++)
        checksum += churn((uint64_t)i);

    for (int i = 0; i < sequential; i++) {
        if (start(1000 + 37 * started) != 0)
            return 3;
        pthread_join(workers[started - 1].thread, NULL);
    }
    for (int i = 0; i < pairs; i++) {
        if (start(1000 + 37 * started) != 0 || start(1000 + 37 * started) != 0)
            return 3;
        pthread_join(workers[started - 2].thread, NULL);
        pthread_join(workers[started - 1].thread, NULL);
    }

    long total = MAIN_CALLS;
    fprintf(stderr, "task %d churn %d\n", (int)getpid(), MAIN_CALLS);
    for (int t = 0; t < started; t++) {
        checksum = checksum * 31 + workers[t].sum;
        total += workers[t].calls;
        fprintf(stderr, "task %d churn %ld\n", (int)workers[t].tid, workers[t].calls);
    }
    printf("count churn %ld\n", total);
    printf("threads %d\n", started + 1);
    printf("checksum %016" PRIx64 "\n", checksum);
    return 0;
}
