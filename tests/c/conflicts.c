/* Small programs for `delayshim run --conflicts`, each in a racy and a
 * fixed form: conflicts DIR CASE FORM, where FORM is racy or fixed (or a
 * lock kind for the counter). Every case passes (exits 0) when run; the
 * report alone tells the forms apart. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *dir;
static char path_buf[4][4096];

static const char *path(int slot, const char *name) {
    snprintf(path_buf[slot], sizeof path_buf[slot], "%s/%s", dir, name);
    return path_buf[slot];
}

static void die(const char *what) {
    perror(what);
    exit(2);
}

static int open_or_die(const char *p, int flags) {
    int fd = open(p, flags, 0600);
    if (fd < 0)
        die(p);
    return fd;
}

static void lock(int fd, const char *kind, int on) {
    if (!strcmp(kind, "flock")) {
        if (flock(fd, on ? LOCK_EX : LOCK_UN) != 0)
            die("flock");
    } else if (!strcmp(kind, "lockf")) {
        lseek(fd, 0, SEEK_SET);
        if (lockf(fd, on ? F_LOCK : F_ULOCK, 0) != 0)
            die("lockf");
    } else {
        struct flock l = {.l_type = on ? F_WRLCK : F_UNLCK, .l_whence = SEEK_SET};
        int cmd = !strcmp(kind, "ofd") ? F_OFD_SETLKW : F_SETLKW;
        if (fcntl(fd, cmd, &l) != 0)
            die("fcntl");
    }
}

static uint64_t read_counter(int fd) {
    uint64_t v = 0;
    if (pread(fd, &v, sizeof v, 0) < 0)
        die("pread");
    return v;
}

static void write_counter(int fd, uint64_t v) {
    if (pwrite(fd, &v, sizeof v, 0) != sizeof v)
        die("pwrite");
}

static void wait_all(void) {
    int status;
    while (wait(&status) > 0)
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            exit(3);
}

/* Two forked processes increment a counter; FORM racy: no lock; else
 * under a lock of that kind (flock, fcntl, ofd, lockf). */
static int counter(const char *form) {
    int fd = open_or_die(path(0, "counter"), O_RDWR | O_CREAT);
    write_counter(fd, 0);
    close(fd);
    /* Both children start when both exist (a pipe, which orders nothing
     * the shim sees): the shim takes a child's exit for its parent's wait,
     * and a first child done before the second's fork would be ordered
     * before it. */
    int go[2];
    if (pipe(go) != 0)
        die("pipe");
    for (int child = 0; child < 2; child++) {
        if (fork() == 0) {
            char byte;
            if (read(go[0], &byte, 1) != 1)
                die("read");
            int own = open_or_die(path(0, "counter"), O_RDWR);
            for (int i = 0; i < 20; i++) {
                if (strcmp(form, "racy"))
                    lock(own, form, 1);
                write_counter(own, read_counter(own) + 1);
                if (strcmp(form, "racy"))
                    lock(own, form, 0);
            }
            _exit(0);
        }
    }
    if (write(go[1], "xx", 2) != 2)
        die("write");
    wait_all();
    fd = open_or_die(path(0, "counter"), O_RDONLY);
    printf("counter %llu\n", (unsigned long long)read_counter(fd));
    return 0;
}

/* One process reads under one lock epoch and writes in the next (racy),
 * or does both in one (fixed). */
static int gap(const char *form) {
    int fd = open_or_die(path(0, "gap"), O_RDWR | O_CREAT);
    write_counter(fd, 0);
    lock(fd, "fcntl", 1);
    uint64_t v = read_counter(fd);
    if (!strcmp(form, "racy")) {
        lock(fd, "fcntl", 0);
        lock(fd, "fcntl", 1);
    }
    write_counter(fd, v + 1);
    lock(fd, "fcntl", 0);
    return 0;
}

/* The holder unlinks the lock file before it unlocks (racy): the waiter,
 * which opened the name before, then locks an inode no name points at. */
static int stale(const char *form) {
    int ready[2];
    if (pipe(ready) != 0)
        die("pipe");
    int fd = open_or_die(path(0, "lock"), O_RDWR | O_CREAT);
    close(fd);
    pid_t holder = fork();
    if (holder == 0) {
        int own = open_or_die(path(0, "lock"), O_RDWR);
        lock(own, "flock", 1);
        char byte;
        if (read(ready[0], &byte, 1) != 1) /* the waiter has opened the name */
            die("read");
        usleep(20000); /* and is waiting for the lock */
        if (!strcmp(form, "racy"))
            unlink(path(0, "lock"));
        lock(own, "flock", 0);
        _exit(0);
    }
    if (fork() == 0) {
        usleep(5000);
        int own = open_or_die(path(0, "lock"), O_RDWR);
        if (write(ready[1], "x", 1) != 1)
            die("write");
        lock(own, "flock", 1);
        lock(own, "flock", 0);
        _exit(0);
    }
    wait_all();
    return 0;
}

static int thread_fd;
static const char *thread_form;
static pthread_barrier_t both_open;

static void *bump(void *arg) {
    (void)arg;
    int own = open_or_die(path(0, "threads"), O_RDWR);
    pthread_barrier_wait(&both_open);
    for (int i = 0; i < 20; i++) {
        if (!strcmp(thread_form, "fixed"))
            lock(own, "flock", 1);
        write_counter(own, read_counter(own) + 1);
        if (!strcmp(thread_form, "fixed"))
            lock(own, "flock", 0);
    }
    close(own);
    return NULL;
}

/* Two threads increment a counter, each through its own open file
 * description, without a lock (racy) or under flock (fixed). */
static int threads(const char *form) {
    thread_form = form;
    thread_fd = open_or_die(path(0, "threads"), O_RDWR | O_CREAT);
    write_counter(thread_fd, 0);
    pthread_t t[2];
    pthread_barrier_init(&both_open, NULL, 2);
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, bump, NULL);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    return 0;
}

/* The parent writes, then runs itself again (fork + exec) to write the
 * same bytes; it writes once more after the child exited (fixed), or at
 * once (racy). A pipe (which orders nothing the shim sees) holds the
 * child's write back until the parent's racy write is made, so the child
 * cannot have exited first (the shim takes an exit for its parent's wait). */
static int exec_case(const char *self, const char *form) {
    int fd = open_or_die(path(0, "shared"), O_RDWR | O_CREAT);
    write_counter(fd, 1);
    int go[2];
    if (pipe(go) != 0)
        die("pipe");
    pid_t child = fork();
    if (child == 0) {
        char reader[16];
        snprintf(reader, sizeof reader, "%d", go[0]);
        execl(self, self, dir, "exec-child", reader, (char *)NULL);
        die("execl");
    }
    if (!strcmp(form, "fixed")) {
        if (write(go[1], "x", 1) != 1)
            die("write");
        wait_all();
        write_counter(fd, 3);
    } else {
        write_counter(fd, 3);
        if (write(go[1], "x", 1) != 1)
            die("write");
        wait_all();
    }
    return 0;
}

static int exec_child(const char *reader) {
    char byte;
    if (read(atoi(reader), &byte, 1) != 1)
        die("read");
    int fd = open_or_die(path(0, "shared"), O_RDWR);
    write_counter(fd, 2);
    return 0;
}

/* A writer publishes a file for a reader: written in place under the
 * reader's eyes (racy), or written to a temporary name and renamed (fixed). */
static int rename_case(const char *form) {
    int done[2];
    if (pipe(done) != 0)
        die("pipe");
    if (fork() == 0) {
        int fd;
        if (!strcmp(form, "racy")) {
            fd = open_or_die(path(0, "published"), O_WRONLY | O_CREAT);
            usleep(20000);
            write_counter(fd, 42);
        } else {
            fd = open_or_die(path(1, "published.tmp"), O_WRONLY | O_CREAT | O_TRUNC);
            write_counter(fd, 42);
            close(fd);
            if (rename(path(1, "published.tmp"), path(0, "published")) != 0)
                die("rename");
        }
        /* The shim does not see wait(): a child's exit orders it before
         * its parent's later calls. Linger until the reader has read. */
        char byte;
        if (read(done[0], &byte, 1) != 1)
            die("read");
        _exit(0);
    }
    int fd;
    while ((fd = open(path(0, "published"), O_RDONLY)) < 0)
        usleep(1000);
    uint64_t v;
    while ((v = read_counter(fd)) == 0)
        usleep(1000);
    if (write(done[1], "x", 1) != 1)
        die("write");
    wait_all();
    printf("read %llu\n", (unsigned long long)v);
    return 0;
}

/* Descriptor numbers reused mid-run: the child's descriptor for file a is
 * closed and its number reused for file b (by open, then by dup2), and
 * the child writes b; the parent writes a. No file is written by both. */
static int reuse(void) {
    int a = open_or_die(path(0, "a"), O_RDWR | O_CREAT);
    close(a);
    if (fork() == 0) {
        int fd = open_or_die(path(0, "a"), O_RDWR);
        close(fd);
        int again = open_or_die(path(1, "b"), O_RDWR | O_CREAT);
        if (again != fd)
            die("the closed number was not reused");
        write_counter(again, 7);
        int other = open_or_die(path(0, "a"), O_RDONLY);
        int b = open_or_die(path(1, "b"), O_RDWR);
        if (dup2(b, other) != other) /* closes a's description silently */
            die("dup2");
        write_counter(other, 8);
        _exit(0);
    }
    int own = open_or_die(path(0, "a"), O_RDWR);
    write_counter(own, 9);
    wait_all();
    return 0;
}

static void write_at(int fd, uint64_t v, off_t at) {
    if (pwrite(fd, &v, sizeof v, at) != sizeof v)
        die("pwrite");
}

static FILE *fopen_at(const char *p, int expected) {
    FILE *f = fopen(p, "r+");
    if (!f)
        die(p);
    if (expected >= 0 && fileno(f) != expected)
        die("the closed number was not reused");
    return f;
}

/* The shim's descriptor cache (a tracked call on a known descriptor
 * makes no fstat) under every way a number goes to another file: the
 * child learns each descriptor as file a (writing a at 100, which nobody
 * else writes), lets the number go to file b (close, fclose, dup2,
 * close_range, closefrom, freopen; reopened by fopen, whose open no
 * wrapper sees) and writes it at 0. The parent writes a at 0 meanwhile,
 * unordered: a write of b named as a would be a conflict. A vfork child
 * and a fork child reuse numbers too; the child's own descriptor, still
 * a, is then written at 200, where the parent writes b: named as b it
 * would be a conflict. */
static int cache(void) {
    close(open_or_die(path(0, "a"), O_RDWR | O_CREAT));
    close(open_or_die(path(1, "b"), O_RDWR | O_CREAT));
    pid_t child = fork();
    if (child == 0) {
        /* close, then an unseen open. */
        int fd = open_or_die(path(0, "a"), O_RDWR);
        write_at(fd, 1, 100);
        close(fd);
        FILE *f = fopen_at(path(1, "b"), fd);
        write_at(fd, 2, 0);
        /* fclose (no wrapper sees its close), then an unseen open. */
        f = freopen(path(0, "a"), "r+", f);
        if (!f || fileno(f) != fd)
            die("freopen");
        write_at(fd, 3, 100);
        fclose(f);
        f = fopen_at(path(1, "b"), fd);
        write_at(fd, 4, 0);
        fclose(f);
        /* freopen moves another file onto the stream's number. */
        f = fopen_at(path(0, "a"), fd);
        write_at(fd, 5, 100);
        f = freopen(path(1, "b"), "r+", f);
        if (!f || fileno(f) != fd)
            die("freopen");
        write_at(fd, 6, 0);
        fclose(f);
        /* dup2 over a known descriptor. */
        int x = open_or_die(path(0, "a"), O_RDWR);
        int y = open_or_die(path(1, "b"), O_RDWR);
        write_at(x, 7, 100);
        if (dup2(y, x) != x)
            die("dup2");
        write_at(x, 8, 0);
        close(y);
        /* close_range, then closefrom, each followed by an unseen open. */
        close(y);
        close(x);
        int r = open_or_die(path(0, "a"), O_RDWR);
        write_at(r, 9, 100);
        if (close_range(r, r, 0) != 0)
            die("close_range");
        f = fopen_at(path(1, "b"), r);
        write_at(r, 10, 0);
        fclose(f);
        f = fopen_at(path(0, "a"), r);
        write_at(r, 11, 100);
        closefrom(r); /* f's descriptor with it: f is left behind */
        f = fopen_at(path(1, "b"), r);
        write_at(r, 12, 0);
        /* A vfork child shares this memory, not these descriptors: what
         * it opens must not be taken for this process's. */
        int own = open_or_die(path(0, "a"), O_RDWR);
        write_at(own, 13, 100);
        pid_t v = vfork();
        if (v == 0) {
            close(own);
            int theirs = open(path(1, "b"), O_RDWR);
            if (theirs == own)
                write_at(theirs, 14, 0);
            _exit(theirs == own ? 0 : 4);
        }
        int status;
        if (v < 0 || waitpid(v, &status, 0) != v || !WIFEXITED(status) || WEXITSTATUS(status))
            die("vfork");
        write_at(own, 15, 200);
        /* A fork child closes and reuses the number in its own table. */
        pid_t k = fork();
        if (k == 0) {
            close(own);
            FILE *g = fopen_at(path(1, "b"), own);
            write_at(own, 16, 0);
            fclose(g);
            _exit(0);
        }
        if (k < 0 || waitpid(k, &status, 0) != k || !WIFEXITED(status) || WEXITSTATUS(status))
            die("fork");
        write_at(own, 17, 200);
        _exit(0);
    }
    int a = open_or_die(path(0, "a"), O_RDWR);
    int b = open_or_die(path(1, "b"), O_RDWR);
    write_at(a, 99, 0);
    write_at(b, 99, 200);
    wait_all();
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3)
        return 2;
    dir = argv[1];
    const char *c = argv[2], *form = argc > 3 ? argv[3] : "";
    if (!strcmp(c, "counter"))
        return counter(form);
    if (!strcmp(c, "gap"))
        return gap(form);
    if (!strcmp(c, "stale"))
        return stale(form);
    if (!strcmp(c, "threads"))
        return threads(form);
    if (!strcmp(c, "exec"))
        return exec_case(argv[0], form);
    if (!strcmp(c, "exec-child"))
        return exec_child(form);
    if (!strcmp(c, "rename"))
        return rename_case(form);
    if (!strcmp(c, "reuse"))
        return reuse();
    if (!strcmp(c, "cache"))
        return cache();
    return 2;
}
