/* Two processes increment a counter kept in a JSON file, {"n":N}, each
 * reading it under a lock, releasing the lock, then writing N+1 under the
 * lock again: an update made between the two is lost. Exit status 1 when
 * one was (the count is short), 0 otherwise.
 *
 *   jsonrace FILE raw|stdio ROUNDS GAP_US
 *
 * The second process starts its rounds GAP_US microseconds after the
 * first: natively the two rarely overlap, delays make them.
 *
 * raw: open, flock, read, write through the system-call wrappers; stdio:
 * fopen, fscanf, fprintf, fclose, whose reads and writes glibc makes
 * internally, out of LD_PRELOAD's sight. Built plain and -static; with
 * -DSTDIO_ONLY it is a stdio program and nothing else (no lock, no call
 * the shim interposes): the race is the plain read-modify-write. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef STDIO_ONLY
static long read_raw(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) exit(2);
    flock(fd, LOCK_EX);
    char buf[64] = {0};
    if (read(fd, buf, sizeof buf - 1) < 0) exit(2);
    flock(fd, LOCK_UN);
    close(fd);
    long n = -1;
    sscanf(buf, "{\"n\":%ld}", &n);
    return n;
}

static void write_raw(const char *path, long n) {
    int fd = open(path, O_WRONLY | O_CREAT, 0600);
    if (fd < 0) exit(2);
    flock(fd, LOCK_EX);
    if (ftruncate(fd, 0) != 0) exit(2);
    char buf[64];
    int len = snprintf(buf, sizeof buf, "{\"n\":%ld}\n", n);
    if (write(fd, buf, len) != len) exit(2);
    fsync(fd);
    flock(fd, LOCK_UN);
    close(fd);
}

#endif

#ifdef STDIO_ONLY
static long read_stdio(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) exit(2);
    long n = -1;
    if (fscanf(f, "{\"n\":%ld}", &n) != 1) n = -1;
    fclose(f);
    return n;
}

/* Fixed-width numbers, written over the old ones in place ("r+"): a
 * reader never meets a truncated file, only a stale count. */
static void write_stdio(const char *path, long n) {
    FILE *f = fopen(path, n == 0 ? "w" : "r+");
    if (!f) exit(2);
    fprintf(f, "{\"n\":%010ld}\n", n);
    fclose(f);
}
#define read_raw read_stdio
#define write_raw write_stdio
#else
static long read_stdio(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) exit(2);
    flock(fileno(f), LOCK_EX);
    long n = -1;
    if (fscanf(f, "{\"n\":%ld}", &n) != 1) n = -1;
    flock(fileno(f), LOCK_UN);
    fclose(f);
    return n;
}

static void write_stdio(const char *path, long n) {
    FILE *f = fopen(path, "r+");
    if (!f) exit(2);
    flock(fileno(f), LOCK_EX);
    if (ftruncate(fileno(f), 0) != 0) exit(2);
    fprintf(f, "{\"n\":%ld}\n", n);
    fflush(f);
    flock(fileno(f), LOCK_UN);
    fclose(f);
}

#endif

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: jsonrace FILE raw|stdio ROUNDS GAP_US\n");
        return 2;
    }
    const char *path = argv[1];
    int stdio = strcmp(argv[2], "stdio") == 0;
    long rounds = atol(argv[3]);
    long gap_us = atol(argv[4]);
    write_raw(path, 0);
    for (int worker = 0; worker < 2; worker++) {
        if (fork() == 0) {
            usleep(worker * gap_us);
            for (long i = 0; i < rounds; i++) {
                long n = stdio ? read_stdio(path) : read_raw(path);
                if (n < 0) _exit(2);
                if (stdio)
                    write_stdio(path, n + 1);
                else
                    write_raw(path, n + 1);
            }
            _exit(0);
        }
    }
    int status, failed = 0;
    while (wait(&status) > 0)
        failed |= !WIFEXITED(status) || WEXITSTATUS(status) != 0;
    long n = read_raw(path);
    if (failed || n < 0) return 2;
    if (n != 2 * rounds) {
        printf("lost updates: %ld of %ld\n", 2 * rounds - n, 2 * rounds);
        return 1;
    }
    return 0;
}
