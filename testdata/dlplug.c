// A library for dlreload.c, built as libdlplug.so. plug_work is the probed function.
#include <stdint.h>

__attribute__((noinline, noclone)) uint64_t plug_work(uint64_t x)
{
    __asm__ volatile("" : "+r"(x));
    return x * 5 + 1;
}

uint64_t plug_run(long calls)
{
    uint64_t sum = 0;
    for (long i = 0; i < calls; i++)
        sum += plug_work((uint64_t)i);
    return sum;
}
