/* Calls every interposed family on a scratch directory, including the
 * error paths, and prints one line per call: name, return value, errno.
 * Built twice by the tests: plain, and with -D_FILE_OFFSET_BITS=64
 * -D_FORTIFY_SOURCE=2 (open64, __open_2, lockf64, ftruncate64 ...). The
 * same output natively and under the shim proves results and errno are
 * untouched. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

static void show(const char *what, long ret) {
    printf("%s %ld %s\n", what, ret, ret < 0 ? strerrorname_np(errno) : "-");
    errno = 0;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: families DIR OTHER_FS_DIR\n");
        return 2;
    }
    if (chdir(argv[1]) != 0) return 2;
    volatile int read_only = O_RDONLY; /* not a constant: fortified open goes through __open_2 */
    char path[4096];

    int fd = open("data", O_CREAT | O_RDWR | O_TRUNC, 0600);
    show("open", fd);
    show("open ENOENT", open("missing/x", read_only));
    show("open EEXIST", open("data", O_CREAT | O_EXCL | O_WRONLY, 0600));
    int ro = open("data", read_only);
    show("open runtime flags", ro);
    show("openat", openat(AT_FDCWD, "data2", O_CREAT | O_WRONLY, 0600) >= 0);
    show("openat runtime flags", openat(AT_FDCWD, "data", read_only) >= 0);
    show("creat", creat("data3", 0600) >= 0);

    show("write", write(fd, "hello", 5));
    struct iovec iov = {.iov_base = "world", .iov_len = 5};
    show("writev", writev(fd, &iov, 1));
    show("write EBADF", write(-1, "x", 1));
    show("write read-only EBADF", write(ro, "x", 1));
    show("pwrite", pwrite(fd, "!", 1, 10));
    char buf[16];
    show("read", read(ro, buf, sizeof buf));
    show("pread", pread(fd, buf, 4, 0));

    show("fsync", fsync(fd));
    show("fdatasync", fdatasync(fd));
    show("sync_file_range", sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE));
    show("syncfs", syncfs(fd));
    show("fsync EBADF", fsync(-1));
    void *map = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map != MAP_FAILED) show("msync", msync(map, 4096, MS_SYNC));
    show("msync EINVAL", msync((char *)map + 1, 10, MS_SYNC));

    int other = open("data", O_RDWR);
    show("flock", flock(fd, LOCK_EX));
    show("flock EWOULDBLOCK", flock(other, LOCK_EX | LOCK_NB));
    show("flock unlock", flock(fd, LOCK_UN));
    show("flock EINVAL", flock(fd, 12345));
    show("lockf", lockf(fd, F_LOCK, 0));
    show("lockf unlock", lockf(fd, F_ULOCK, 0));
    show("lockf EBADF", lockf(-1, F_LOCK, 0));
    struct flock lock = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    show("fcntl setlk", fcntl(fd, F_SETLK, &lock));
    lock.l_type = F_UNLCK;
    show("fcntl unlock", fcntl(fd, F_SETLK, &lock));
    show("fcntl EBADF", fcntl(-1, F_GETFL));

    show("ftruncate", ftruncate(fd, 100));
    show("ftruncate EINVAL", ftruncate(fd, -1));
    show("truncate", truncate("data", 50));
    show("truncate ENOENT", truncate("missing", 50));
    show("fallocate", fallocate(fd, 0, 0, 4096));
    show("posix_fallocate", -posix_fallocate(fd, 0, 8192));

    show("rename", rename("data2", "data4"));
    show("rename ENOENT", rename("missing", "data5"));
    snprintf(path, sizeof path, "%s/moved", argv[2]);
    show("rename EXDEV", rename("data4", path));
    show("renameat", renameat(AT_FDCWD, "data4", AT_FDCWD, "data6"));
    show("renameat2 EEXIST", renameat2(AT_FDCWD, "data6", AT_FDCWD, "data", RENAME_NOREPLACE));
    show("link", link("data", "hard"));
    show("link EEXIST", link("data", "hard"));
    show("linkat", linkat(AT_FDCWD, "data", AT_FDCWD, "hard2", 0));
    show("symlink", symlink("data", "soft"));
    show("symlinkat EEXIST", symlinkat("data", AT_FDCWD, "soft"));
    show("unlink", unlink("hard"));
    show("unlink ENOENT", unlink("hard"));
    show("unlinkat", unlinkat(AT_FDCWD, "hard2", 0));
    show("mkdir", mkdir("sub", 0700));
    show("mkdir EEXIST", mkdir("sub", 0700));
    show("mkdirat", mkdirat(AT_FDCWD, "sub2", 0700));
    show("rmdir", rmdir("sub"));
    show("rmdir ENOENT", rmdir("sub"));

    show("close", close(other));
    show("close EBADF", close(-1));
    show("close", close(fd));
    return 0;
}
