/* Probes for the seccomp backend, built -static (no loader, no shim):
 *
 *   held writes FILE N         N pwrite calls, one line: "wrote N"
 *   held other N               N getppid system calls (outside the filter)
 *   held exit FILE             a thread's write is held while the main
 *                              thread exits with status 3
 *   held orphan FILE SOCKET    a forked child's pwrite; when it returns
 *                              (held calls fail when the supervisor dies)
 *                              it sends "ret R errno E" to the datagram
 *                              SOCKET, a call outside the filter
 *   held filter DIR            installs its own seccomp filter (mkdir fails
 *                              with EPERM), then writes and mkdirs; prints
 *                              each result */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static int open_file(const char *path) {
    int fd = open(path, O_RDWR | O_CREAT, 0600);
    if (fd < 0) exit(2);
    return fd;
}

static void *held_write(void *arg) {
    int fd = *(int *)arg;
    if (pwrite(fd, "x", 1, 0) != 1) exit(4);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    const char *mode = argv[1];
    if (strcmp(mode, "writes") == 0 && argc == 4) {
        int fd = open_file(argv[2]);
        int n = atoi(argv[3]);
        for (int i = 0; i < n; i++)
            if (pwrite(fd, "x", 1, i) != 1) return 4;
        printf("wrote %d\n", n);
        return 0;
    }
    if (strcmp(mode, "other") == 0) {
        long n = atol(argv[2]);
        for (long i = 0; i < n; i++) syscall(SYS_getppid);
        return 0;
    }
    if (strcmp(mode, "exit") == 0) {
        static int fd;
        fd = open_file(argv[2]);
        pthread_t thread;
        pthread_create(&thread, NULL, held_write, &fd);
        usleep(200000);
        _exit(3);
    }
    if (strcmp(mode, "orphan") == 0 && argc == 4) {
        int fd = open_file(argv[2]);
        pid_t child = fork();
        if (child == 0) {
            errno = 0;
            long ret = pwrite(fd, "x", 1, 0);
            char message[64];
            int len = snprintf(message, sizeof message, "ret %ld errno %d", ret, ret < 0 ? errno : 0);
            int sock = socket(AF_UNIX, SOCK_DGRAM, 0);
            struct sockaddr_un addr = {.sun_family = AF_UNIX};
            strncpy(addr.sun_path, argv[3], sizeof addr.sun_path - 1);
            sendto(sock, message, len, 0, (struct sockaddr *)&addr, sizeof addr);
            _exit(0);
        }
        waitpid(child, NULL, 0);
        return 0;
    }
    if (strcmp(mode, "filter") == 0) {
        struct sock_filter filter[] = {
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_mkdir, 0, 1),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        };
        struct sock_fprog prog = {.len = 4, .filter = filter};
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return 5;
        printf("filter %d\n", prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog));
        char path[4096];
        snprintf(path, sizeof path, "%s/data", argv[2]);
        int fd = open_file(path);
        printf("pwrite %ld\n", (long)pwrite(fd, "x", 1, 0));
        snprintf(path, sizeof path, "%s/dir", argv[2]);
        int made = mkdir(path, 0700);
        printf("mkdir %d %s\n", made, made < 0 ? strerrorname_np(errno) : "-");
        printf("fsync %d\n", fsync(fd));
        return 0;
    }
    return 2;
}
