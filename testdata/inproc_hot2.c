// Two threads call one probed function back to back as fast as they can, at the same time: the
// load that fills per-thread rings faster than a tracer can drain them, so a tracer must still
// count every call exactly and account for every sample it could not keep.
//
// Usage: inproc_hot2 [CALLS_PER_THREAD]   (default 1000000)
// stdout:  count hot <total calls of both threads>
//          threads 2
//          checksum <16 hex digits>
// stderr:  task <tid> hot <calls>          one line per thread; tids differ between runs, which
//                                          is why they are not on stdout (stdout must be
//                                          identical traced and untraced)
// Exit code 0; 2 on a bad argument; 3 if a thread could not be created.
#define _GNU_SOURCE
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

enum { THREADS = 2 };

struct worker {
    pthread_t thread;
    long calls;
    uint64_t seed;
    pid_t tid;
    uint64_t sum;
};

static pthread_barrier_t start_line;

__attribute__((noinline, noclone)) uint64_t hot(uint64_t x)
{
    // The empty asm keeps the compiler from folding the loop of calls into arithmetic.
    __asm__ volatile("" : "+r"(x));
    return (x ^ (x >> 29)) * 0xbf58476d1ce4e5b9ULL;
}

static void *run_worker(void *arg)
{
    struct worker *w = arg;
    w->tid = (pid_t)syscall(SYS_gettid);
    // Released together, so the two threads really hit the probe at the same time.
    pthread_barrier_wait(&start_line);
    uint64_t sum = 0;
    for (long i = 0; i < w->calls; i++)
        sum += hot((uint64_t)i + w->seed);
    w->sum = sum;
    return NULL;
}

int main(int argc, char **argv)
{
    long calls = argc > 1 ? atol(argv[1]) : 1000000;
    if (calls < 1) {
        fprintf(stderr, "usage: inproc_hot2 [CALLS_PER_THREAD>0]\n");
        return 2;
    }
    static struct worker workers[THREADS];
    pthread_barrier_init(&start_line, NULL, THREADS);
    for (int t = 0; t < THREADS; t++) {
        workers[t].calls = calls;
        // Different arguments per thread: a sample attributed to the wrong thread, or a
        // relocated instruction that mixes up registers, changes the checksum.
        workers[t].seed = (uint64_t)(t + 1) << 40;
        if (pthread_create(&workers[t].thread, NULL, run_worker, &workers[t]) != 0) {
            perror("pthread_create");
            return 3;
        }
    }
    uint64_t checksum = 0;
    for (int t = 0; t < THREADS; t++) {
        pthread_join(workers[t].thread, NULL);
        checksum = checksum * 31 + workers[t].sum;
    }

    for (int t = 0; t < THREADS; t++)
        fprintf(stderr, "task %d hot %ld\n", (int)workers[t].tid, workers[t].calls);
    printf("count hot %ld\n", (long)THREADS * calls);
    printf("threads %d\n", THREADS);
    printf("checksum %016" PRIx64 "\n", checksum);
    return 0;
}
