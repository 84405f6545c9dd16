/* Starts PROBE five times where a preloaded library cannot add anything to
 * the child's environment: glibc's system() and popen() spawn through
 * internal calls, and execl() is variadic and not wrapped. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: spawner PROBE\n");
        return 2;
    }
    char command[4096];
    snprintf(command, sizeof command, "'%s' calls 10", argv[1]);
    for (int i = 0; i < 2; i++)
        if (system(command) != 0) return 1;
    FILE *pipe = popen(command, "r");
    if (!pipe) return 1;
    char line[256];
    while (fgets(line, sizeof line, pipe)) {}
    if (pclose(pipe) != 0) return 1;
    for (int i = 0; i < 2; i++) {
        pid_t child = fork();
        if (child < 0) return 1;
        if (child == 0) {
            execl(argv[1], "probe", "calls", "10", (char *)NULL);
            _exit(127);
        }
        int status;
        if (waitpid(child, &status, 0) != child || status != 0) return 1;
    }
    return 0;
}
