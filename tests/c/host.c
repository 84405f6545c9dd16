/* Hosts that broke earlier shims: each mode is a way real programs use
 * the calls the shim interposes, from signal handlers, on alternate
 * stacks, with long paths, with reused descriptor numbers, with blocking
 * locks interrupted by signals. Prints what the test checks; exits 0
 * when the program itself saw nothing wrong. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int data_fd = -1;
static volatile sig_atomic_t ticks;

static void *churn(void *arg) {
    (void)arg;
    for (;;) {
        void *p = malloc(1 + rand() % 4096);
        free(p);
    }
    return NULL;
}

static void timer(long usec, int repeat) {
    struct itimerval it = {{0, repeat ? usec : 0}, {0, usec}};
    setitimer(ITIMER_REAL, &it, NULL);
}

static void on_alarm_exit(int sig) {
    (void)sig;
    _exit(0);
}

/* The main thread and a second one allocate; SIGALRM's handler calls
 * _exit while one of them is inside malloc. */
static int exit_in_handler(void) {
    pthread_t thread;
    pthread_create(&thread, NULL, churn, NULL);
    signal(SIGALRM, on_alarm_exit);
    timer(2000, 0);
    churn(NULL);
    return 1;
}

static void on_alarm_io(int sig) {
    (void)sig;
    struct flock lock = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_len = 1};
    pwrite(data_fd, "x", 1, 0);
    fcntl(data_fd, F_SETLK, &lock);
    lock.l_type = F_UNLCK;
    fcntl(data_fd, F_SETLK, &lock);
    fsync(data_fd);
    ticks++;
}

/* A 1 ms timer whose handler writes, locks and syncs while the main
 * thread allocates. */
static int handler_io(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/handler-io.db", dir);
    data_fd = open(path, O_CREAT | O_RDWR, 0600);
    struct sigaction sa = {.sa_handler = on_alarm_io, .sa_flags = SA_RESTART};
    sigaction(SIGALRM, &sa, NULL);
    timer(1000, 1);
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    do {
        for (int i = 0; i < 1000; i++) free(malloc(1 + rand() % 8192));
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 < 300);
    timer(0, 0);
    printf("handler ran %d times\n", (int)ticks);
    return ticks > 0 ? 0 : 1;
}

/* The handler runs on the smallest alternate stack the system allows. */
static int altstack(const char *dir) {
    long size = sysconf(_SC_MINSIGSTKSZ);
    if (size < MINSIGSTKSZ) size = MINSIGSTKSZ;
    unsigned char *memory = malloc(size);
    memset(memory, 0xa5, size);
    stack_t stack = {.ss_sp = memory, .ss_size = size};
    if (sigaltstack(&stack, NULL) != 0) return 2;
    char path[4096];
    snprintf(path, sizeof path, "%s/altstack.db", dir);
    data_fd = open(path, O_CREAT | O_RDWR, 0600);
    struct sigaction sa = {.sa_handler = on_alarm_io, .sa_flags = SA_ONSTACK | SA_RESTART};
    sigaction(SIGUSR1, &sa, NULL);
    for (int i = 0; i < 20; i++) raise(SIGUSR1);
    long untouched = 0;
    while (untouched < size && memory[untouched] == 0xa5) untouched++;
    printf("alternate stack of %ld bytes, %ld used, handler ran %d times\n", size, size - untouched, (int)ticks);
    return ticks == 20 ? 0 : 1;
}

/* A delayed, logged call on a file whose path is about 4000 bytes, and
 * one whose name holds a newline. */
static int long_path(const char *dir) {
    char path[8192];
    size_t len = (size_t)snprintf(path, sizeof path, "%s", dir);
    while (len < 4000) {
        len += (size_t)snprintf(path + len, sizeof path - len, "/%s", "d123456789012345678901234567890123456789012345678901234567890123456789");
        if (mkdir(path, 0700) != 0 && errno != EEXIST) return 2;
    }
    snprintf(path + len, sizeof path - len, "/file");
    int fd = open(path, O_CREAT | O_RDWR, 0600);
    if (fd < 0) return 2;
    pwrite(fd, "x", 1, 0);
    fsync(fd);
    close(fd);
    snprintf(path, sizeof path, "%s/new\nline delayshim pid=1 fn=forged", dir);
    fd = open(path, O_CREAT | O_RDWR, 0600);
    pwrite(fd, "x", 1, 0);
    fsync(fd);
    close(fd);
    printf("path of %zu bytes\n", len + 5);
    return 0;
}

/* Closes every descriptor from 3 up, as closefrom does, then puts its own
 * data file on every number up to 1023 and writes through them. */
static int reuse_fds(const char *dir) {
    for (int fd = 3; fd < 1024; fd++) close(fd);
    char path[4096];
    snprintf(path, sizeof path, "%s/host-data", dir);
    int fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0600);
    for (int n = 3; n < 1024; n++)
        if (n != fd) dup2(fd, n);
    for (int i = 0; i < 10; i++) {
        pwrite(fd, "host\n", 5, i * 5);
        fsync(fd);
    }
    return 0;
}

static void on_alarm_nothing(int sig) { (void)sig; }

/* F_SETLKW while a child holds the lock (or, with "free", while no one
 * does); a SIGALRM handler with or without SA_RESTART arrives at 100 ms.
 * The child releases at 500 ms. */
static int setlkw(const char *dir, const char *mode) {
    char path[4096];
    snprintf(path, sizeof path, "%s/lock", dir);
    int fd = open(path, O_CREAT | O_RDWR, 0600);
    int ready[2];
    if (pipe(ready) != 0) return 2;
    int held = strcmp(mode, "free") != 0;
    pid_t child = -1;
    if (held) {
        child = fork();
        if (child == 0) {
            struct flock lock = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
            fcntl(fd, F_SETLK, &lock);
            write(ready[1], "r", 1);
            usleep(500000);
            _exit(0);
        }
        char c;
        read(ready[0], &c, 1);
    }
    struct sigaction sa = {.sa_handler = on_alarm_nothing,
                           .sa_flags = strcmp(mode, "restart") == 0 ? SA_RESTART : 0};
    sigaction(SIGALRM, &sa, NULL);
    timer(100000, 0);
    struct flock lock = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    int ret = fcntl(fd, F_SETLKW, &lock);
    int saved = errno;
    printf("F_SETLKW %d %s\n", ret, ret < 0 ? strerrorname_np(saved) : "-");
    if (child > 0) waitpid(child, NULL, 0);
    return 0;
}

static void *nothing(void *arg) { return arg; }

/* A thread with the smallest stack a program may ask for. */
static int small_stack(void) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 16384);
    pthread_t thread;
    int error = pthread_create(&thread, &attr, nothing, NULL);
    printf("pthread_create with a 16 KB stack: %d\n", error);
    if (error == 0) pthread_join(thread, NULL);
    return error == 0 ? 0 : 1;
}

/* Bad path pointers fail with EFAULT, as natively. */
static int bad_pointer(void) {
    int fd = open((const char *)8, O_WRONLY | O_CREAT, 0600);
    int saved = errno;
    int renamed = rename((const char *)8, "/tmp/x");
    printf("open %d %s, rename %d %s\n", fd, strerrorname_np(saved), renamed, strerrorname_np(errno));
    char *argv_true[] = {"true", NULL};
    char **volatile bad_environment = (char **)8; /* volatile: the compiler sees no constant */
    int bad_array = execve("/bin/true", argv_true, bad_environment);
    saved = errno;
    char *bad_entry_env[] = {"A=1", (char *)8, NULL};
    int bad_entry = execve("/bin/true", argv_true, bad_entry_env);
    printf("execve bad environment %d %s, bad entry %d %s\n", bad_array, strerrorname_np(saved), bad_entry,
           strerrorname_np(errno));
    fflush(stdout);
    return 0;
}

/* The host closes standard error and opens its data file there. */
static int stderr_reuse(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/data", dir);
    close(2);
    int fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0600);
    write(fd, "DATA\n", 5);
    fsync(fd);
    return fd == 2 ? 0 : 1;
}

/* An injected close error still closes the descriptor. */
static int close_fault(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/closing", dir);
    int fd = open(path, O_CREAT | O_RDWR, 0600);
    int closed = close(fd);
    int saved = errno;
    int still = fcntl(fd, F_GETFD);
    printf("close %d %s, then F_GETFD %d %s\n", closed, closed < 0 ? strerrorname_np(saved) : "-", still,
           still < 0 ? strerrorname_np(errno) : "-");
    return 0;
}

static int quick(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/quick", dir);
    int fd = open(path, O_CREAT | O_RDWR, 0600);
    fsync(fd);
    quick_exit(0);
}

extern char **environ;

/* Runs /bin/true, as posix_spawn with the process's environment (how) 0,
 * or fork then execve with one of its own (1); 0 when it ran. */
static int run_true(int how) {
    char *argv_true[] = {"true", NULL};
    char *own_environment[] = {"A=1", "DELAYSHIM_TREE=1:2", "B=2", NULL};
    pid_t child;
    if (how == 0) {
        if (posix_spawn(&child, "/bin/true", NULL, NULL, argv_true, environ) != 0) return 1;
    } else {
        child = fork();
        if (child == 0) {
            execve("/bin/true", argv_true, own_environment);
            _exit(127);
        }
    }
    int status;
    return waitpid(child, &status, 0) == child && status == 0 ? 0 : 1;
}

/* A crash reporter: a SIGSEGV handler on an alternate stack of `size`
 * bytes (8 KB by default, glibc's SIGSTKSZ without _GNU_SOURCE; 4 KB at
 * the least) starts other programs. */
static char small_altstack[8192];
static void on_segv_report(int sig) {
    (void)sig;
    int failed = run_true(0) + run_true(1);
    _exit(failed ? 1 : 42);
}
static int report_on_crash(size_t size) {
    if (size < 4096 || size > sizeof small_altstack) return 2;
    stack_t stack = {.ss_sp = small_altstack, .ss_size = size};
    sigaltstack(&stack, NULL);
    struct sigaction action = {.sa_handler = on_segv_report, .sa_flags = SA_ONSTACK};
    sigaction(SIGSEGV, &action, NULL);
    raise(SIGSEGV);
    return 1;
}

/* What a sandboxed program does: exec, lock and spawn as usual. */
static int sandbox_checks(const char *dir) {
    char *argv_true[] = {"true", NULL};
    int missing = execve("/nonexistent", argv_true, environ);
    printf("execve %d %s\n", missing, strerrorname_np(errno));
    char path[4096];
    snprintf(path, sizeof path, "%s/locked", dir);
    int fd = open(path, O_CREAT | O_RDWR, 0600);
    struct flock lock = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    printf("lock %d, ", fcntl(fd, F_SETLK, &lock));
    printf("spawned %d %d\n", run_true(0), run_true(1));
    fflush(stdout);
    return 0;
}

/* A sandbox whose seccomp filter kills the process on process_vm_readv
 * (systemd's @system-service leaves it out). Installed with prctl, or
 * with the seccomp system call through syscall() as libseccomp does, then
 * the checks; then, as if installed before an exec as systemd and
 * firejail do, the checks in the new program. */
static int sandboxed(const char *dir, int through_syscall) {
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_process_vm_readv, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog program = {.len = 4, .filter = filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) return 2;
    int installed = through_syscall ? syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &program)
                                    : prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program);
    if (installed) return 2;
    sandbox_checks(dir);
    char *again[] = {"host", "sandbox-checks", (char *)dir, NULL};
    execve("/proc/self/exe", again, environ);
    return 3;
}

/* Loads the shim, unloads it, then uses the environment and forks. */
static int dlclose_shim(const char *shim) {
    void *handle = dlopen(shim, RTLD_NOW | RTLD_LOCAL);
    if (!handle || dlclose(handle)) return 2;
    size_t length = 0;
    for (char **entry = environ; *entry; entry++) length += strlen(*entry);
    printf("environment %s, child %d\n", length ? "read" : "empty", run_true(0) + run_true(1));
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    const char *mode = argv[1], *dir = argc > 2 ? argv[2] : "/tmp";
    if (!strcmp(mode, "exit-in-handler")) return exit_in_handler();
    if (!strcmp(mode, "handler-io")) return handler_io(dir);
    if (!strcmp(mode, "altstack")) return altstack(dir);
    if (!strcmp(mode, "long-path")) return long_path(dir);
    if (!strcmp(mode, "reuse-fds")) return reuse_fds(dir);
    if (!strcmp(mode, "setlkw")) return setlkw(dir, argc > 3 ? argv[3] : "norestart");
    if (!strcmp(mode, "quick-exit")) return quick(dir);
    if (!strcmp(mode, "small-stack")) return small_stack();
    if (!strcmp(mode, "bad-pointer")) return bad_pointer();
    if (!strcmp(mode, "stderr-reuse")) return stderr_reuse(dir);
    if (!strcmp(mode, "close-fault")) return close_fault(dir);
    if (!strcmp(mode, "report-on-crash"))
        return report_on_crash(argc > 2 ? strtoul(argv[2], NULL, 10) : sizeof small_altstack);
    if (!strcmp(mode, "sandboxed")) return sandboxed(dir, 0);
    if (!strcmp(mode, "sandboxed-syscall")) return sandboxed(dir, 1);
    if (!strcmp(mode, "sandbox-checks")) return sandbox_checks(dir);
    if (!strcmp(mode, "dlclose")) return dlclose_shim(dir);
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
}
