// Calls a probed function N times on each of T threads and reports how long the calls took by
// its own clock, so the per-hit cost of a tracer is measured without its start-up and tear-down.
//
// Usage: hitcost N [T [WARMUP]]
//   T (default 1): threads making N calls each; with 1 the main thread makes them, none is created.
//   WARMUP (default 0): calls each thread makes before the timed section, followed by a 50 ms
//   pause: a tracer's first touch of its sample buffers is paid there, and it has time to drain
//   them, so the timed calls see buffers that are mapped and empty.
// stdout: calls <N>           calls per thread
//         threads <T>
//         loop_ns <nanoseconds (CLOCK_MONOTONIC)>: with T = 1 the loop itself; with T > 1 the
//                             wall time of the parallel section, from the first thread starting
//                             its loop (a barrier releases them together) to the last finishing
//         checksum <value>
// Exit code 0; 2 on a bad argument; 3 if a thread could not be created.
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { MAX_THREADS = 64 };

__attribute__((noinline, noclone)) uint64_t func(uint64_t x)
{
    // The empty asm keeps the compiler from folding the loop of calls into arithmetic.
    __asm__ volatile("" : "+r"(x));
    return x * 31 + 7;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t call_loop(long n, uint64_t seed)
{
    uint64_t sum = 0;
    for (long i = 0; i < n; i++)
        sum += func((uint64_t)i + seed);
    return sum;
}

static void warm_up(long n)
{
    if (n == 0)
        return;
    volatile uint64_t sink = call_loop(n, 1u << 30);
    (void)sink;
    const struct timespec pause = { 0, 50 * 1000000 };
    nanosleep(&pause, NULL);
}

struct worker {
    pthread_t thread;
    long calls, warmup;
    uint64_t seed;
    uint64_t sum;
    uint64_t start_ns, end_ns;
    // Each worker writes its own sum at the end; padding keeps two workers' results off one
    // cache line, so the benchmark itself does not add false sharing to what it measures.
    char pad[64];
};

static pthread_barrier_t start_line;

static void *run_worker(void *arg)
{
    struct worker *w = arg;
    warm_up(w->warmup);
    pthread_barrier_wait(&start_line);
    // Each worker reads the clock itself: with as many workers as CPUs, the main thread is
    // often scheduled only after they have finished, so its own clock would miss the section.
    w->start_ns = now_ns();
    w->sum = call_loop(w->calls, w->seed);
    w->end_ns = now_ns();
    return NULL;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 100000;
    int threads = argc > 2 ? atoi(argv[2]) : 1;
    long warmup = argc > 3 ? atol(argv[3]) : 0;
    if (n < 1 || threads < 1 || threads > MAX_THREADS || warmup < 0) {
        fprintf(stderr, "usage: hitcost CALLS>0 [THREADS 1..%d [WARMUP>=0]]\n", MAX_THREADS);
        return 2;
    }

    uint64_t sum = 0, elapsed;
    if (threads == 1) {
        warm_up(warmup);
        uint64_t start = now_ns();
        sum = call_loop(n, 0);
        elapsed = now_ns() - start;
    } else {
        static struct worker workers[MAX_THREADS];
        pthread_barrier_init(&start_line, NULL, (unsigned)threads + 1);
        for (int t = 0; t < threads; t++) {
            workers[t].calls = n;
            workers[t].warmup = warmup;
            workers[t].seed = (uint64_t)t << 40;
            if (pthread_create(&workers[t].thread, NULL, run_worker, &workers[t]) != 0) {
                perror("pthread_create");
                return 3;
            }
        }
        // Thread creation (and a tracer's handling of each clone) happens before the barrier,
        // so it is not part of the timed section.
        pthread_barrier_wait(&start_line);
        uint64_t first_start = UINT64_MAX, last_end = 0;
        for (int t = 0; t < threads; t++) {
            pthread_join(workers[t].thread, NULL);
            sum = sum * 31 + workers[t].sum;
            if (workers[t].start_ns < first_start)
                first_start = workers[t].start_ns;
            if (workers[t].end_ns > last_end)
                last_end = workers[t].end_ns;
        }
        elapsed = last_end - first_start;
    }
    printf("calls %ld\nthreads %d\nloop_ns %" PRIu64 "\nchecksum %" PRIu64 "\n", n, threads, elapsed, sum);
    return 0;
}
