/* Starts PROBE 37 times in ways where a wrapper cannot simply add an
 * entry to the child's environment: glibc's system() and popen() spawn
 * through internal calls, execl() is variadic and not wrapped, an
 * environment of 300 entries is too large for the shim's stack copy (in a
 * vfork child too, as Python's subprocess makes), a program that rebuilt
 * its environment from copies (as setproctitle implementations do) holds
 * a copy of the shim's own entry, four threads at once spawn with the
 * process's environment, and six live threads in turn vfork with a large
 * environment (more threads than the shim keeps arrays for). */
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static int wait_for(pid_t child) {
    int status;
    return waitpid(child, &status, 0) == child && status == 0 ? 0 : 1;
}

static char *probe;
static char **large;
static pthread_mutex_t turn_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t turn_changed = PTHREAD_COND_INITIALIZER;
static int turn;
static pthread_barrier_t all_done;

/* Thread `arg` waits for its turn, vforks once, then stays alive until
 * every thread has had its turn: six thread pointers at once. */
static void *vfork_in_turn(void *arg) {
    long me = (long)arg;
    char *probe_argv[] = {"probe", "calls", "10", NULL};
    pthread_mutex_lock(&turn_lock);
    while (turn != me) pthread_cond_wait(&turn_changed, &turn_lock);
    pthread_mutex_unlock(&turn_lock);
    pid_t child = vfork();
    if (child == 0) {
        execve(probe, probe_argv, large);
        _exit(127);
    }
    void *failed = child < 0 || wait_for(child) ? "failed" : NULL;
    pthread_mutex_lock(&turn_lock);
    turn++;
    pthread_cond_broadcast(&turn_changed);
    pthread_mutex_unlock(&turn_lock);
    pthread_barrier_wait(&all_done);
    return failed;
}

static void *spawn_five(void *unused) {
    (void)unused;
    char *probe_argv[] = {"probe", "calls", "10", NULL};
    for (int i = 0; i < 5; i++) {
        pid_t child;
        if (posix_spawn(&child, probe, NULL, NULL, probe_argv, environ) != 0 || wait_for(child)) return "failed";
    }
    return NULL;
}

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
        if (wait_for(child)) return 1;
    }
    /* The process's environment and 300 more entries, in an array of its own. */
    int count = 0;
    while (environ[count]) count++;
    large = calloc(count + 301, sizeof *large);
    /* Copies of the strings, as Python's os.environ passes them. */
    for (int i = 0; i < count; i++) large[i] = strdup(environ[i]);
    for (int i = 0; i < 300; i++) {
        large[count + i] = malloc(32);
        snprintf(large[count + i], 32, "FILLER_%d=x", i);
    }
    char *probe_argv[] = {"probe", "calls", "10", NULL};
    for (int i = 0; i < 2; i++) {
        pid_t child;
        if (posix_spawn(&child, argv[1], NULL, NULL, probe_argv, large) != 0 || wait_for(child)) return 1;
    }
    for (int i = 0; i < 2; i++) {
        pid_t child = vfork();
        if (child == 0) {
            execve(argv[1], probe_argv, large);
            _exit(127);
        }
        if (child < 0 || wait_for(child)) return 1;
    }
    probe = argv[1];
    pthread_t threads[4];
    for (int i = 0; i < 4; i++) pthread_create(&threads[i], NULL, spawn_five, NULL);
    for (int i = 0; i < 4; i++) {
        void *failed;
        pthread_join(threads[i], &failed);
        if (failed) return 1;
    }
    pthread_t in_turn[6];
    pthread_barrier_init(&all_done, NULL, 6);
    for (long i = 0; i < 6; i++) pthread_create(&in_turn[i], NULL, vfork_in_turn, (void *)i);
    for (int i = 0; i < 6; i++) {
        void *failed;
        pthread_join(in_turn[i], &failed);
        if (failed) return 1;
    }
    /* The environment rebuilt from copies of its strings. */
    char **copies = calloc(count + 1, sizeof *copies);
    for (int i = 0; i < count; i++) copies[i] = strdup(environ[i]);
    environ = copies;
    for (int i = 0; i < 2; i++)
        if (system(command) != 0) return 1;
    return 0;
}
