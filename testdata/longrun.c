// Runs until told to stop, calling a probed function in a loop; used to interrupt a recording.
//
// Usage: longrun [MAX_SECONDS]   (default 120; a safety net so a lost signal cannot hang a test)
// stdout: ready <pid>                once, flushed, after the first call of spin_work
//         now intact|patched         flushed, on each SIGUSR1, and the program runs on: whether
//                                    spin_work's bytes equal the file's at that moment (a tracer
//                                    that probes spin_work must have patched them; one whose
//                                    filter wants no part of this process must not have)
//         count spin_work <calls>    after SIGTERM or SIGINT
//         intact yes|no              whether the first 16 bytes of spin_work in memory equal
//                                    the bytes at its file offset in /proc/self/exe, i.e. every
//                                    breakpoint or jump a tracer wrote there has been removed
// Exit code 0 after a signal; 4 if MAX_SECONDS passed without one; 5 if the check itself failed.
#define _GNU_SOURCE
#include <fcntl.h>
#include <link.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

enum { CHECKED_BYTES = 16 };

static volatile sig_atomic_t stop_requested, check_requested;
static volatile uint64_t sink;

__attribute__((noinline, noclone)) uint64_t spin_work(uint64_t x)
{
    __asm__ volatile("" : "+r"(x));
    return x ^ (x >> 7);
}

static void on_stop(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void on_check(int sig)
{
    (void)sig;
    check_requested = 1;
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

// 1 intact, 0 modified, -1 could not check.
static int code_intact(void)
{
    struct lookup l = { (uintptr_t)&spin_work, -1 };
    dl_iterate_phdr(find_offset, &l);
    if (l.file_offset < 0)
        return -1;
    unsigned char on_disk[CHECKED_BYTES];
    int fd = open("/proc/self/exe", O_RDONLY);
    if (fd < 0)
        return -1;
    ssize_t n = pread(fd, on_disk, sizeof on_disk, l.file_offset);
    close(fd);
    if (n != (ssize_t)sizeof on_disk)
        return -1;
    return memcmp(on_disk, (const void *)&spin_work, sizeof on_disk) == 0;
}

int main(int argc, char **argv)
{
    long max_seconds = argc > 1 ? atol(argv[1]) : 120;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_check;
    sigaction(SIGUSR1, &sa, NULL);

    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    long calls = 0;
    sink += spin_work(0);
    calls++;
    printf("ready %d\n", (int)getpid());
    fflush(stdout);
    while (!stop_requested) {
        if (check_requested) {
            check_requested = 0;
            int now = code_intact();
            printf("now %s\n", now < 0 ? "unknown" : now ? "intact" : "patched");
            fflush(stdout);
        }
        sink += spin_work((uint64_t)calls);
        calls++;
        if ((calls & 1023) == 0) {
            clock_gettime(CLOCK_MONOTONIC, &now);
            if (now.tv_sec - start.tv_sec > max_seconds) {
                printf("count spin_work %ld\ntimeout\n", calls);
                return 4;
            }
        }
    }
    int intact = code_intact();
    printf("count spin_work %ld\n", calls);
    if (intact < 0) {
        printf("intact unknown\n");
        return 5;
    }
    printf("intact %s\n", intact ? "yes" : "no");
    return 0;
}
