/* Two processes whose race needs one order of their lock epochs, and a
 * process blocked in read() on a pipe, for the pct strategy. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char path_buf[4096];
static const char *in_dir(const char *dir, const char *name) {
    snprintf(path_buf, sizeof path_buf, "%s/%s", dir, name);
    return path_buf;
}

/* A scheduling point of the shim's: a write to a file of its own. */
static void started(const char *dir, const char *name) {
    int fd = open(in_dir(dir, name), O_CREAT | O_WRONLY | O_TRUNC, 0600);
    write(fd, "started\n", 8);
    close(fd);
}

/* Waits, outside any scheduling point, until `name` exists. */
static void await(const char *dir, const char *name) {
    struct stat st;
    while (stat(in_dir(dir, name), &st) != 0) usleep(200);
}

static void epoch(const char *dir, const char *me) {
    int fd = open(in_dir(dir, "order"), O_CREAT | O_WRONLY | O_APPEND, 0600);
    flock(fd, LOCK_EX);
    write(fd, me, 1);
    flock(fd, LOCK_UN);
    close(fd);
}

/* A takes the lock at once, B 5 ms later: natively A's epoch comes first;
 * the bug is B's first. Exits 1 on the bug. */
static int order(const char *dir) {
    pid_t a = fork();
    if (a == 0) {
        started(dir, "a");
        await(dir, "b");
        epoch(dir, "A");
        _exit(0);
    }
    pid_t b = fork();
    if (b == 0) {
        started(dir, "b");
        await(dir, "a");
        struct timespec pause = {0, 5 * 1000 * 1000};
        nanosleep(&pause, NULL);
        epoch(dir, "B");
        _exit(0);
    }
    int status;
    waitpid(a, &status, 0);
    waitpid(b, &status, 0);
    char seen[3] = {0};
    int fd = open(in_dir(dir, "order"), O_RDONLY);
    read(fd, seen, 2);
    printf("%s\n", seen);
    return strcmp(seen, "AB") == 0 ? 0 : 1;
}

/* A blocks in read() on a pipe until B has passed 21 scheduling points. */
static int blocked(const char *dir) {
    int pipe_fds[2];
    if (pipe(pipe_fds)) return 2;
    pid_t a = fork();
    if (a == 0) {
        started(dir, "a");
        char byte;
        read(pipe_fds[0], &byte, 1);
        _exit(0);
    }
    pid_t b = fork();
    if (b == 0) {
        started(dir, "b");
        for (int i = 0; i < 10; i++) epoch(dir, "B");
        write(pipe_fds[1], "x", 1);
        _exit(0);
    }
    int status, failed = 0;
    waitpid(a, &status, 0);
    failed |= status != 0;
    waitpid(b, &status, 0);
    failed |= status != 0;
    return failed;
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    if (!strcmp(argv[1], "order")) return order(argv[2]);
    if (!strcmp(argv[1], "blocked")) return blocked(argv[2]);
    return 2;
}
