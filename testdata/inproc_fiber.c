// A fiber that a scheduler moves between threads while a %return-probed call is in flight. P starts
// on the main thread and suspends itself (swapcontext back to main); a new thread resumes the fiber,
// and P returns there. Its return address is uprec's return trampoline, but its shadow entry is on
// the main thread's shadow stack: uprec must find it there, or the program dies of SIGTRAP.
//
// stdout: count P <calls>
//         returns P <calls that returned>
//         migrated <calls that returned on another thread than the one they began on>
//         checksum <16 hex digits>
// Exit code 0; 3 if a thread could not be created.
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <ucontext.h>

static ucontext_t main_ctx, thread_ctx, fiber;
static char fiber_stack[65536];
static long returned_p;
static int result;

__attribute__((noinline, noclone)) int P(int x)
{
    __asm__ volatile("" : "+r"(x));
    swapcontext(&fiber, &main_ctx); // suspend: main goes on; another thread resumes us
    returned_p++;
    return x + 1;
}

static void fiber_main(void) { result = P(result); }

static void *resume_fiber(void *arg)
{
    (void)arg;
    swapcontext(&thread_ctx, &fiber); // P returns on this thread; the fiber ends into thread_ctx
    return NULL;
}

int main(void)
{
    enum { ROUNDS = 40 };
    uint64_t checksum = 0;
    for (int i = 0; i < ROUNDS; i++) {
        result = i * 7;
        getcontext(&fiber);
        fiber.uc_stack.ss_sp = fiber_stack;
        fiber.uc_stack.ss_size = sizeof fiber_stack;
        fiber.uc_link = &thread_ctx;
        makecontext(&fiber, fiber_main, 0);
        swapcontext(&main_ctx, &fiber);
        pthread_t t;
        if (pthread_create(&t, NULL, resume_fiber, NULL) != 0) return 3;
        pthread_join(t, NULL);
        checksum = checksum * 31 + (uint64_t)result;
    }
    printf("count P %d\nreturns P %ld\nmigrated %d\n", ROUNDS, returned_p, ROUNDS);
    printf("checksum %016" PRIx64 "\n", checksum);
    return 0;
}
