/* Hosts that broke the shim in its second round of hostile testing: each
 * mode is a way real programs use the process around the calls the shim
 * interposes (descriptors, signals, sandboxes, threads, environments).
 * Prints what the test checks; exits 0 when the program saw nothing
 * wrong. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

static char path_buf[4096];
static const char *in_dir(const char *dir, const char *name) {
    snprintf(path_buf, sizeof path_buf, "%s/%s", dir, name);
    return path_buf;
}

/* Open descriptors, /proc/self/fd's own excluded. */
static int open_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n - 1;
}

/* A background job: the child sends its output to /dev/null and counts
 * the descriptors it still holds on its parent's standard error. */
static int background_job(const char *dir) {
    struct stat caller;
    if (fstat(2, &caller)) return 2;
    write(1, "", 0); /* a delayed, logged call before the fork */
    pid_t child = fork();
    if (child == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        close(null);
        int held = 0;
        for (int fd = 0; fd < 4096; fd++) {
            struct stat st;
            if (fstat(fd, &st) == 0 && st.st_dev == caller.st_dev && st.st_ino == caller.st_ino)
                held++;
        }
        FILE *out = fopen(in_dir(dir, "held"), "w");
        fprintf(out, "%d\n", held);
        fclose(out);
        _exit(0);
    }
    int status;
    waitpid(child, &status, 0);
    return status == 0 ? 0 : 1;
}

/* Delayed writes to a file; a reader of standard error may be gone. */
static int some_writes(const char *dir) {
    int fd = open(in_dir(dir, "data"), O_CREAT | O_WRONLY | O_TRUNC, 0600);
    for (int i = 0; i < 10; i++)
        if (write(fd, "x", 1) != 1) return 1;
    close(fd);
    return 0;
}

/* A sandbox of the program's own, installed after start: strict mode or
 * an allow-list of read, write and exit. The program then writes. */
static int sandboxed_writes(const char *dir, int strict) {
    int fd = open(in_dir(dir, "data"), O_CREAT | O_WRONLY | O_TRUNC, 0600);
    if (write(fd, "before\n", 7) != 7) return 1;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) return 2;
    if (strict) {
        if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT)) return 2;
    } else {
        struct sock_filter filter[] = {
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_read, 4, 0),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_write, 3, 0),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_exit, 2, 0),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_exit_group, 1, 0),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        };
        struct sock_fprog program = {.len = sizeof filter / sizeof filter[0], .filter = filter};
        if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &program)) return 2;
    }
    for (int i = 0; i < 5; i++)
        if (write(fd, "after\n", 6) != 6) syscall(SYS_exit, 3);
    /* Strict mode allows exit, not exit_group. */
    syscall(SYS_exit, 0);
    return 4;
}

static sigjmp_buf jump_back;
static void on_alarm_jump(int sig) {
    (void)sig;
    siglongjmp(jump_back, 1);
}

static void repeat_alarm(long usec) {
    struct itimerval it = {{0, usec}, {0, usec}};
    setitimer(ITIMER_REAL, &it, NULL);
}

/* The lock-with-timeout idiom: SIGALRM's handler jumps out of a blocking
 * lock call, 200 times; prints the descriptors open before and after. */
static int lock_timeouts(const char *dir) {
    int fd = open(in_dir(dir, "lock"), O_CREAT | O_RDWR, 0600);
    signal(SIGALRM, on_alarm_jump);
    int before = open_fds();
    for (int round = 0; round < 200; round++) {
        if (sigsetjmp(jump_back, 1) == 0) {
            struct itimerval it = {{0, 0}, {0, 1000}};
            setitimer(ITIMER_REAL, &it, NULL);
            struct flock lock = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
            fcntl(fd, F_SETLKW, &lock);
            struct itimerval off = {{0, 0}, {0, 0}};
            setitimer(ITIMER_REAL, &off, NULL);
        }
        struct flock unlock = {.l_type = F_UNLCK, .l_whence = SEEK_SET};
        fcntl(fd, F_SETLK, &unlock);
    }
    printf("open before %d after %d\n", before, open_fds());
    return 0;
}

/* Writes under a 1 ms SIGALRM whose handler jumps out of wherever the
 * thread is, the shim's decision included. */
static int writes_under_jumps(const char *dir) {
    int fd = open(in_dir(dir, "data"), O_CREAT | O_WRONLY | O_TRUNC, 0600);
    signal(SIGALRM, on_alarm_jump);
    repeat_alarm(1000);
    for (volatile int i = 0; i < 2000; i++) {
        if (sigsetjmp(jump_back, 1) == 0) write(fd, "x", 1);
    }
    repeat_alarm(0);
    return 0;
}

static int writer_fd = -1;
static int writes_per_thread;
static void *writer(void *arg) {
    (void)arg;
    for (int i = 0; i < writes_per_thread; i++) write(writer_fd, "x", 1);
    return NULL;
}

/* Many threads inside the shim at once. */
static int many_threads(const char *dir, int threads, int writes) {
    writer_fd = open(in_dir(dir, "data"), O_CREAT | O_WRONLY | O_TRUNC, 0600);
    writes_per_thread = writes;
    pthread_t ids[256];
    if (threads > 256) return 2;
    for (int i = 0; i < threads; i++) pthread_create(&ids[i], NULL, writer, NULL);
    for (int i = 0; i < threads; i++) pthread_join(ids[i], NULL);
    return 0;
}

/* Transfers of 0, 1 and 4 bytes: prints what each write returned. */
static int small_writes(const char *dir) {
    int fd = open(in_dir(dir, "data"), O_CREAT | O_WRONLY | O_TRUNC, 0600);
    printf("%zd %zd %zd\n", write(fd, "", 0), write(fd, "x", 1), write(fd, "abcd", 4));
    return 0;
}

/* Opens files until the descriptor limit; prints how many it got. */
static int open_until_full(const char *dir) {
    int opened = 0, fds[4096];
    while (opened < 4096 && (fds[opened] = open(in_dir(dir, "data"), O_CREAT | O_RDONLY, 0600)) >= 0)
        opened++;
    printf("opened %d (%s)\n", opened, strerrorname_np(errno));
    while (opened > 0) close(fds[--opened]);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    const char *mode = argv[1], *dir = argv[2];
    if (!strcmp(mode, "background-job")) return background_job(dir);
    if (!strcmp(mode, "some-writes")) return some_writes(dir);
    if (!strcmp(mode, "strict-sandbox")) return sandboxed_writes(dir, 1);
    if (!strcmp(mode, "allow-list-sandbox")) return sandboxed_writes(dir, 0);
    if (!strcmp(mode, "lock-timeouts")) return lock_timeouts(dir);
    if (!strcmp(mode, "writes-under-jumps")) return writes_under_jumps(dir);
    if (!strcmp(mode, "many-threads") && argc == 5)
        return many_threads(dir, atoi(argv[3]), atoi(argv[4]));
    if (!strcmp(mode, "small-writes")) return small_writes(dir);
    if (!strcmp(mode, "open-until-full")) return open_until_full(dir);
    return 2;
}
