// Functions for glob probe specs. `parse_*` must match exactly parse_int, parse_word and
// parse_line; parser_reset and parsed_total share a prefix but not the underscore and must
// not match.
//
// stdout: count <function> <calls>  for all five functions
//         checksum <16 hex digits>
// Exit code 0.
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>

#define PROBED __attribute__((noinline, noclone, used))

static uint64_t checksum = 14695981039346656037ULL;
static void fold(uint64_t v) { checksum = (checksum ^ v) * 1099511628211ULL; }

PROBED int parse_int(int x) { __asm__ volatile("" : "+r"(x)); return x * 10 + 1; }
PROBED int parse_word(int x) { __asm__ volatile("" : "+r"(x)); return x * 10 + 2; }
PROBED int parse_line(int x) { __asm__ volatile("" : "+r"(x)); return x * 10 + 3; }
PROBED int parser_reset(int x) { __asm__ volatile("" : "+r"(x)); return x * 10 + 4; }
PROBED int parsed_total(int x) { __asm__ volatile("" : "+r"(x)); return x * 10 + 5; }

int main(void)
{
    enum { N_INT = 301, N_WORD = 307, N_LINE = 311, N_RESET = 313, N_TOTAL = 317 };
    for (int i = 0; i < N_INT; i++) fold((uint64_t)parse_int(i));
    for (int i = 0; i < N_WORD; i++) fold((uint64_t)parse_word(i));
    for (int i = 0; i < N_LINE; i++) fold((uint64_t)parse_line(i));
    for (int i = 0; i < N_RESET; i++) fold((uint64_t)parser_reset(i));
    for (int i = 0; i < N_TOTAL; i++) fold((uint64_t)parsed_total(i));
    printf("count parse_int %d\n", N_INT);
    printf("count parse_word %d\n", N_WORD);
    printf("count parse_line %d\n", N_LINE);
    printf("count parser_reset %d\n", N_RESET);
    printf("count parsed_total %d\n", N_TOTAL);
    printf("checksum %016" PRIx64 "\n", checksum);
    return 0;
}
