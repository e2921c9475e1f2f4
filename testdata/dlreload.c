// Loads libdlplug.so (next to this program) with dlopen, calls into it, unloads it, occupies
// the address range it had so the next load cannot land there, loads it again and calls it again.
// A probe on libdlplug.so:plug_work must count both rounds; a probe left at the old address
// would hit the anonymous mapping that now occupies it.
//
// stdout: count plug_work <calls over both loads>
//         count plug_run 2
//         unloaded yes|no          (the library vanished from /proc/self/maps after dlclose)
//         moved yes|no             (the second load is at another address)
//         checksum <16 hex digits>
// Exit code 0; 3 if loading failed.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <link.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

enum { N_FIRST = 701, N_SECOND = 409 };

typedef uint64_t (*run_fn)(long);

static int mapped(const char *name)
{
    FILE *maps = fopen("/proc/self/maps", "r");
    char line[PATH_MAX + 128];
    int found = 0;
    while (maps && fgets(line, sizeof line, maps))
        if (strstr(line, name))
            found = 1;
    if (maps)
        fclose(maps);
    return found;
}

// The span [lowest, highest) of the library's PT_LOAD segments.
static void span(void *handle, uintptr_t *start, size_t *length)
{
    struct link_map *map;
    dlinfo(handle, RTLD_DI_LINKMAP, &map);
    const ElfW(Ehdr) *eh = (const ElfW(Ehdr) *)map->l_addr;
    const ElfW(Phdr) *ph = (const ElfW(Phdr) *)(map->l_addr + eh->e_phoff);
    uintptr_t hi = 0;
    for (int i = 0; i < eh->e_phnum; i++)
        if (ph[i].p_type == PT_LOAD && ph[i].p_vaddr + ph[i].p_memsz > hi)
            hi = ph[i].p_vaddr + ph[i].p_memsz;
    *start = map->l_addr;
    *length = (hi + 4095) & ~(uintptr_t)4095;
}

int main(void)
{
    char self[PATH_MAX], lib[PATH_MAX + 32];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n < 0) { perror("readlink"); return 3; }
    self[n] = 0;
    snprintf(lib, sizeof lib, "%s/libdlplug.so", dirname(self));

    void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (!h) { fprintf(stderr, "dlreload: %s\n", dlerror()); return 3; }
    uint64_t checksum = ((run_fn)dlsym(h, "plug_run"))(N_FIRST);
    uintptr_t old_start;
    size_t old_length;
    span(h, &old_start, &old_length);
    dlclose(h);
    int unloaded = !mapped("libdlplug.so");

    void *blocker = mmap((void *)old_start, old_length, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (blocker == MAP_FAILED) { perror("dlreload: mmap over the old range"); return 3; }

    h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (!h) { fprintf(stderr, "dlreload: %s\n", dlerror()); return 3; }
    checksum = checksum * 31 + ((run_fn)dlsym(h, "plug_run"))(N_SECOND);
    uintptr_t new_start;
    size_t new_length;
    span(h, &new_start, &new_length);
    dlclose(h);
    munmap(blocker, old_length);

    printf("count plug_work %d\n", N_FIRST + N_SECOND);
    printf("count plug_run 2\n");
    printf("unloaded %s\n", unloaded ? "yes" : "no");
    printf("moved %s\n", new_start != old_start ? "yes" : "no");
    printf("checksum %016" PRIx64 "\n", checksum);
    return 0;
}
