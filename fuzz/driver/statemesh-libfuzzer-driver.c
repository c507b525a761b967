// StateMesh's libFuzzer driver: libFuzzer runs in this process and mutates inputs; a .NET child process runs one fuzz
// target under SharpFuzz's Fuzzer.LibFuzzer.Run and reports back over two pipes. Written for StateMesh from
// SharpFuzz's documented protocol:
//   - one System V shared memory segment: 65,536 bytes of edge counters that SharpFuzz's instrumentation increments,
//     then the input; its id in __LIBFUZZER_SHM_ID;
//   - a control pipe (the child's read end in __LIBFUZZER_CONTROL_PIPE_ID): the input's length, 4 bytes, per input;
//   - a status pipe (the child's write end in __LIBFUZZER_STATUS_PIPE_ID): 4 bytes, 0 once ready and 0 per input that
//     ran, non-zero when the target threw.
// The child's counters are copied into libFuzzer's extra counters after each input, so libFuzzer's coverage is the
// .NET code's. An input that makes the target throw, or kills the child, aborts this process: libFuzzer saves it as
// crash-<sha1>. Hangs are libFuzzer's -timeout (the child dies with this process: PR_SET_PDEATHSIG).
//
// Environment: STATEMESH_FUZZ_DLL (the instrumented StateMesh.Fuzz.dll), STATEMESH_FUZZ_TARGET (a target name).
// Build: clang -O2 -fsanitize=fuzzer statemesh-libfuzzer-driver.c -o statemesh-libfuzzer-driver
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAP_SIZE 65536
#define MAX_INPUT (1 << 20)
#define START_TIMEOUT_MS 120000

__attribute__((used, section("__libfuzzer_extra_counters"))) static uint8_t coverage[MAP_SIZE];

static uint8_t *shared;
static int control_fd = -1, status_fd = -1;
static pid_t child = -1;

static int read_exactly(int fd, void *buffer, size_t count) {
  uint8_t *at = buffer;
  while (count > 0) {
    ssize_t n = read(fd, at, count);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    at += n;
    count -= (size_t)n;
  }
  return 0;
}

static int write_exactly(int fd, const void *buffer, size_t count) {
  const uint8_t *at = buffer;
  while (count > 0) {
    ssize_t n = write(fd, at, count);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    at += n;
    count -= (size_t)n;
  }
  return 0;
}

static void stop_child(void) {
  if (child > 0) {
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    child = -1;
  }
}

static void fail(const char *what) {
  fprintf(stderr, "statemesh-libfuzzer-driver: %s: %s\n", what, strerror(errno));
  exit(1);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  const char *dll = getenv("STATEMESH_FUZZ_DLL");
  const char *target = getenv("STATEMESH_FUZZ_TARGET");
  if (dll == NULL || target == NULL) {
    fprintf(stderr, "statemesh-libfuzzer-driver: set STATEMESH_FUZZ_DLL and STATEMESH_FUZZ_TARGET\n");
    exit(2);
  }
  int shm_id = shmget(IPC_PRIVATE, MAP_SIZE + MAX_INPUT, IPC_CREAT | IPC_EXCL | 0600);
  if (shm_id < 0) fail("shmget");
  shared = shmat(shm_id, NULL, 0);
  if (shared == (void *)-1) fail("shmat");
  int control[2], status[2];
  if (pipe(control) != 0 || pipe(status) != 0) fail("pipe");
  child = fork();
  if (child < 0) fail("fork");
  if (child == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    close(control[1]);
    close(status[0]);
    char value[32];
    snprintf(value, sizeof value, "%d", shm_id);
    setenv("__LIBFUZZER_SHM_ID", value, 1);
    snprintf(value, sizeof value, "%d", control[0]);
    setenv("__LIBFUZZER_CONTROL_PIPE_ID", value, 1);
    snprintf(value, sizeof value, "%d", status[1]);
    setenv("__LIBFUZZER_STATUS_PIPE_ID", value, 1);
    execlp("dotnet", "dotnet", dll, target, (char *)NULL);
    perror("statemesh-libfuzzer-driver: exec dotnet");
    _exit(127);
  }
  close(control[0]);
  close(status[1]);
  control_fd = control[1];
  status_fd = status[0];
  signal(SIGPIPE, SIG_IGN);
  atexit(stop_child);
  // The segment goes away once both processes have detached (Linux lets the child attach after this).
  struct pollfd ready = {.fd = status_fd, .events = POLLIN};
  int32_t hello;
  if (poll(&ready, 1, START_TIMEOUT_MS) != 1 || read_exactly(status_fd, &hello, sizeof hello) != 0) {
    fprintf(stderr, "statemesh-libfuzzer-driver: the .NET target '%s' did not start\n", target);
    exit(1);
  }
  shmctl(shm_id, IPC_RMID, NULL);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > MAX_INPUT) return -1;
  memcpy(shared + MAP_SIZE, data, size);
  memset(shared, 0, MAP_SIZE);
  int32_t length = (int32_t)size;
  int32_t status;
  if (write_exactly(control_fd, &length, sizeof length) != 0 || read_exactly(status_fd, &status, sizeof status) != 0) {
    fprintf(stderr, "statemesh-libfuzzer-driver: the .NET target died on this input\n");
    abort();
  }
  memcpy(coverage, shared, MAP_SIZE);
  if (status != 0) {
    fprintf(stderr, "statemesh-libfuzzer-driver: the .NET target threw on this input (its exception is above)\n");
    abort();
  }
  return 0;
}
