// Exec'd by forkexec: calls child_work argv[1] times. Prints nothing (its parent prints the
// ground truth); exits 0 if argv[2] is "ok" and every result was as expected, else 3.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

__attribute__((noinline, noclone)) uint64_t child_work(uint64_t x)
{
    __asm__ volatile("" : "+r"(x));
    return x + 3;
}

int main(int argc, char **argv)
{
    if (argc < 3 || strcmp(argv[2], "ok") != 0)
        return 3;
    long n = atol(argv[1]);
    for (long i = 0; i < n; i++)
        if (child_work((uint64_t)i) != (uint64_t)i + 3)
            return 3;
    return 0;
}
