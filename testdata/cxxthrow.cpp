// C++ exceptions thrown through probed frames: ct_outer -> ct_middle -> ct_thrower, which throws
// on every third call; main catches. A return probe that hijacks return addresses without
// helping the unwinder turns these throws into std::terminate.
//
// stdout: count ct_outer|ct_middle|ct_thrower <calls>
//         returns ct_outer|ct_middle|ct_thrower <calls that returned normally>
//         caught <exceptions caught in main>
//         checksum <16 hex digits>
// The probed functions are extern "C" only so that their symbols are the plain names; they are
// still C++ functions with unwind tables, which is what the throw goes through.
// Exit code 0.
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <stdexcept>

static long returned_outer, returned_middle, returned_thrower;

struct Failure : std::runtime_error {
    explicit Failure(uint64_t v) : std::runtime_error("ct_thrower"), value(v) {}
    uint64_t value;
};

extern "C" __attribute__((noinline, noclone)) uint64_t ct_thrower(uint64_t x)
{
    asm volatile("" : "+r"(x));
    if (x % 3 == 0)
        throw Failure(x);
    returned_thrower++;
    return x * 7;
}

extern "C" __attribute__((noinline, noclone)) uint64_t ct_middle(uint64_t x)
{
    uint64_t r = ct_thrower(x) + 1;
    asm volatile("" : "+r"(r));
    returned_middle++;
    return r;
}

extern "C" __attribute__((noinline, noclone)) uint64_t ct_outer(uint64_t x)
{
    uint64_t r = ct_middle(x) + 1;
    asm volatile("" : "+r"(r));
    returned_outer++;
    return r;
}

int main()
{
    const int calls = 600;
    uint64_t checksum = 0;
    long caught = 0;
    for (int i = 0; i < calls; i++) {
        try {
            checksum = checksum * 5 + ct_outer(static_cast<uint64_t>(i));
        } catch (const Failure &f) {
            caught++;
            checksum = checksum * 3 + f.value;
        }
    }
    std::printf("count ct_outer %d\ncount ct_middle %d\ncount ct_thrower %d\n", calls, calls, calls);
    std::printf("returns ct_outer %ld\nreturns ct_middle %ld\nreturns ct_thrower %ld\n",
                returned_outer, returned_middle, returned_thrower);
    std::printf("caught %ld\n", caught);
    std::printf("checksum %016" PRIx64 "\n", checksum);
    return 0;
}
