// Checks that a recorded program keeps its stdin, stdout, stderr and exit status.
// Reads lines from stdin, calls handle_line for each and echoes it upper-cased to stdout;
// writes one line to stderr; then exits with the code in argv[1], or kills itself with the
// signal named by argv[1] = "signal:N" (the recorder must then exit with 128+N).
//
// stdout: <each input line upper-cased>
//         count handle_line <lines>
// stderr: passthru: to stderr
// Exit code: argv[1] (default 0).
#include <ctype.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

__attribute__((noinline, noclone)) void handle_line(char *line)
{
    for (char *p = line; *p; p++)
        *p = (char)toupper((unsigned char)*p);
    fputs(line, stdout);
}

int main(int argc, char **argv)
{
    char line[4096];
    long lines = 0;
    while (fgets(line, sizeof line, stdin)) {
        handle_line(line);
        lines++;
    }
    printf("count handle_line %ld\n", lines);
    fflush(stdout);
    fputs("passthru: to stderr\n", stderr);
    const char *how = argc > 1 ? argv[1] : "0";
    if (strncmp(how, "signal:", 7) == 0) {
        int sig = atoi(how + 7);
        signal(sig, SIG_DFL);
        raise(sig);
        return 99; // not reached for a fatal signal
    }
    return atoi(how);
}
