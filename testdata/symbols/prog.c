/* Symbol-resolution fixture for tests/Uprec.Symbols.Tests: built PIE, non-PIE, stripped to .dynsym only
 * (-rdynamic then strip), and stripped of every symbol. The tests take ground truth from nm/objdump/readelf. */
#include <stdio.h>
#include <stdlib.h>

int counter;

/* Same name as the static helper in other.c: a symbol name can have two definitions. */
static int helper(int x) { return x * 3 + counter; }

int parse_header(int x) { return helper(x) + 1; }
int parse_body(int x) { return helper(x) + 2; }
int parse_footer(int x) { return helper(x) + 3; }

int work(int n)
{
    int sum = 0;
    for (int i = 0; i < n; i++)
        sum += parse_header(i) + parse_body(i) + parse_footer(i);
    return sum;
}

/* Two names for one function: a glob matching both must give one site. */
int work_alias(int n) __attribute__((alias("work")));

void tiny(void) { }

int other_entry(int x);

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 3;
    tiny();
    printf("%d %d\n", work(n), other_entry(n));
    return 0;
}
