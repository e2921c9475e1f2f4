// Several threads call one function at the same time. A pthread barrier releases them together
// so their calls really overlap (a tracer that serialises or loses hits under concurrency shows).
//
// Usage: threads [THREADS [CALLS_PER_THREAD]]   (defaults 4 and 50000)
// stdout:  count work <total calls>      (worker calls + the main thread's MAIN_CALLS calls)
//          threads <number of tasks that called work, main thread included>
//          checksum <16 hex digits>
// stderr:  task <tid> work <calls>        one line per task; tids differ between runs, which is
//                                         why they are not on stdout (stdout must be identical
//                                         traced and untraced)
// Exit code 0; 2 on a bad argument; 3 if a thread could not be created.
#define _GNU_SOURCE
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

enum { MAIN_CALLS = 7, MAX_THREADS = 64 };

struct worker {
    pthread_t thread;
    long calls;
    pid_t tid;
    uint64_t sum;
};

static pthread_barrier_t start_line;

__attribute__((noinline, noclone)) uint64_t work(uint64_t x)
{
    // The empty asm keeps the compiler from folding the loop of calls into arithmetic.
    __asm__ volatile("" : "+r"(x));
    return x * 2654435761u + 1;
}

static void *run_worker(void *arg)
{
    struct worker *w = arg;
    w->tid = (pid_t)syscall(SYS_gettid);
    pthread_barrier_wait(&start_line);
    uint64_t sum = 0;
    for (long i = 0; i < w->calls; i++)
        sum += work((uint64_t)i);
    w->sum = sum;
    return NULL;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 4;
    long calls = argc > 2 ? atol(argv[2]) : 50000;
    if (threads < 1 || threads > MAX_THREADS || calls < 1) {
        fprintf(stderr, "usage: threads [1..%d [CALLS>0]]\n", MAX_THREADS);
        return 2;
    }
    static struct worker workers[MAX_THREADS];
    pthread_barrier_init(&start_line, NULL, (unsigned)threads + 1);
    for (int t = 0; t < threads; t++) {
        workers[t].calls = calls;
        if (pthread_create(&workers[t].thread, NULL, run_worker, &workers[t]) != 0) {
            perror("pthread_create");
            return 3;
        }
    }
    pthread_barrier_wait(&start_line);
    uint64_t checksum = 0;
    for (int i = 0; i < MAIN_CALLS; i++)
        checksum += work((uint64_t)i * 1000);
    for (int t = 0; t < threads; t++) {
        pthread_join(workers[t].thread, NULL);
        checksum = checksum * 31 + workers[t].sum;
    }

    fprintf(stderr, "task %d work %d\n", (int)getpid(), MAIN_CALLS);
    for (int t = 0; t < threads; t++)
        fprintf(stderr, "task %d work %ld\n", (int)workers[t].tid, workers[t].calls);
    printf("count work %ld\n", (long)threads * calls + MAIN_CALLS);
    printf("threads %d\n", threads + 1);
    printf("checksum %016" PRIx64 "\n", checksum);
    return 0;
}
