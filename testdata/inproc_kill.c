// Runs for a few seconds calling a probed function, for a tracer that attaches and patches it,
// then is killed with SIGKILL or detaches: the program must finish on its own with the same
// checksum as an untraced run. The work is a fixed number of rounds per thread (so the checksum
// never depends on timing), each a batch of calls followed by a 1 ms sleep (so the run lasts
// about ROUNDS ms whatever the CPU speed).
//
// Usage: inproc_kill [ROUNDS [CALLS_PER_ROUND [PATCH_WAIT_SECONDS [THREADS]]]]
//        (defaults 5000, 20000, 0, 1)
// With PATCH_WAIT_SECONDS, the counted rounds start only once kwork is seen patched (or that many
// seconds have passed): however long a tracer takes to start and attach, it is killed or detaches
// while the counted rounds run. The waiting rounds (main thread) call kwork the same way but
// count in neither output line. The counted rounds run on THREADS threads started after the wait.
// stdout:  ready <pid>                 once, flushed, after the first call of kwork
//          count kwork <calls>         calls of the counted rounds, all threads (+1 for the call
//                                      before ready)
//          checksum <16 hex digits>
// stderr:  patched round <r>           once, flushed, the first time kwork's first bytes in memory
//                                      differ from its bytes in /proc/self/exe (a tracer's patch);
//                                      r counts a thread's rounds from the start, waiting rounds included
//          patched rounds <n>          at the end: rounds (of all threads) that saw kwork patched
//          intact yes|no               at the end: whether kwork's bytes equal the file's again
//                                      (a tracer that detached cleanly restored them)
// Exit code 0; 2 on a bad argument; 3 if a thread could not be created; 5 if kwork's bytes in
// the file could not be read.
#define _GNU_SOURCE
#include <fcntl.h>
#include <inttypes.h>
#include <link.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { CHECKED_BYTES = 8, MAX_THREADS = 16 };

static volatile uint64_t sink;

__attribute__((noinline, noclone)) uint64_t kwork(uint64_t x)
{
    __asm__ volatile("" : "+r"(x));
    return (x + 0x632be59bd9b4e019ULL) * 0x94d049bb133111ebULL;
}

struct lookup {
    uintptr_t address;
    long file_offset;
};

// The main program is the first object dl_iterate_phdr reports; map the address back to a file
// offset through the PT_LOAD header that contains it.
static int find_offset(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    struct lookup *l = data;
    uintptr_t vaddr = l->address - info->dlpi_addr;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD && vaddr >= ph->p_vaddr && vaddr < ph->p_vaddr + ph->p_filesz) {
            l->file_offset = (long)(vaddr - ph->p_vaddr + ph->p_offset);
            return 1;
        }
    }
    return 1; // only the first object (the executable) is of interest
}

// kwork's first bytes as the file has them, read once: comparing against memory each round
// then costs a memcmp, not a file read.
static int read_original(unsigned char *out)
{
    struct lookup l = { (uintptr_t)&kwork, -1 };
    dl_iterate_phdr(find_offset, &l);
    if (l.file_offset < 0)
        return -1;
    int fd = open("/proc/self/exe", O_RDONLY);
    if (fd < 0)
        return -1;
    ssize_t n = pread(fd, out, CHECKED_BYTES, l.file_offset);
    close(fd);
    return n == CHECKED_BYTES ? 0 : -1;
}

static unsigned char original[CHECKED_BYTES];
static int reported_patch;

// Counts a round that sees kwork patched; the first one seen by any thread is reported at once.
static void check_patched(long round, long *patched_rounds)
{
    if (memcmp(original, (const void *)&kwork, CHECKED_BYTES) != 0) {
        (*patched_rounds)++;
        if (!__atomic_exchange_n(&reported_patch, 1, __ATOMIC_RELAXED)) {
            fprintf(stderr, "patched round %ld\n", round);
            fflush(stderr);
        }
    }
}

static const struct timespec pause_between_rounds = { 0, 1000000 };

struct worker {
    pthread_t thread;
    long rounds, per_round, first_round;
    uint64_t seed, checksum;
    long patched_rounds;
};

static void *run_rounds(void *arg)
{
    struct worker *w = arg;
    uint64_t checksum = 0, x = w->seed;
    for (long r = 0; r < w->rounds; r++) {
        for (long i = 0; i < w->per_round; i++)
            checksum = checksum * 31 + kwork(x++);
        check_patched(w->first_round + r, &w->patched_rounds);
        nanosleep(&pause_between_rounds, NULL);
    }
    w->checksum = checksum;
    return NULL;
}

int main(int argc, char **argv)
{
    long rounds = argc > 1 ? atol(argv[1]) : 5000;
    long per_round = argc > 2 ? atol(argv[2]) : 20000;
    long patch_wait = argc > 3 ? atol(argv[3]) : 0;
    int threads = argc > 4 ? atoi(argv[4]) : 1;
    if (rounds < 1 || per_round < 1 || patch_wait < 0 || threads < 1 || threads > MAX_THREADS) {
        fprintf(stderr, "usage: inproc_kill [ROUNDS>0 [CALLS_PER_ROUND>0 [PATCH_WAIT_SECONDS>=0 [THREADS 1..%d]]]]\n", MAX_THREADS);
        return 2;
    }
    if (read_original(original) != 0) {
        fprintf(stderr, "inproc_kill: cannot read kwork's bytes from /proc/self/exe\n");
        return 5;
    }

    uint64_t checksum = kwork(0);
    printf("ready %d\n", (int)getpid());
    fflush(stdout);

    long patched_rounds = 0, round = 0;
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (; patched_rounds == 0; round++) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((now.tv_sec - start.tv_sec) * 1000000000L + (now.tv_nsec - start.tv_nsec) >= patch_wait * 1000000000L)
            break;
        for (long i = 0; i < per_round; i++)
            sink += kwork((uint64_t)i);
        check_patched(round, &patched_rounds);
        nanosleep(&pause_between_rounds, NULL);
    }

    static struct worker workers[MAX_THREADS];
    for (int t = 0; t < threads; t++) {
        workers[t] = (struct worker){ .rounds = rounds, .per_round = per_round, .first_round = round,
                                      .seed = 1 + (uint64_t)t * (uint64_t)rounds * (uint64_t)per_round };
        if (pthread_create(&workers[t].thread, NULL, run_rounds, &workers[t]) != 0) {
            perror("pthread_create");
            return 3;
        }
    }
    for (int t = 0; t < threads; t++) {
        pthread_join(workers[t].thread, NULL);
        checksum = checksum * 31 + workers[t].checksum;
        patched_rounds += workers[t].patched_rounds;
    }
    int intact = memcmp(original, (const void *)&kwork, CHECKED_BYTES) == 0;
    fprintf(stderr, "patched rounds %ld\nintact %s\n", patched_rounds, intact ? "yes" : "no");
    printf("count kwork %ld\n", 1 + (long)threads * rounds * per_round);
    printf("checksum %016" PRIx64 "\n", checksum);
    return 0;
}
