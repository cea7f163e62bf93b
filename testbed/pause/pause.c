/* The test bed's sandbox ("pause") container: PID 1 of every pod's sandbox. It holds the pod's
 * namespaces open, reaps any child re-parented to it, and exits 0 on SIGTERM or SIGINT.
 * Built static (gcc -static -Os) into a FROM scratch image by testbed/images.sh. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t stopping;

static void on_stop(int sig) { (void)sig; stopping = 1; }

static void on_child(int sig) {
  (void)sig;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

int main(void) {
  struct sigaction stop = {.sa_handler = on_stop}, child = {.sa_handler = on_child, .sa_flags = SA_NOCLDSTOP};
  sigset_t handled, waiting;
  sigemptyset(&stop.sa_mask);
  sigemptyset(&child.sa_mask);
  sigemptyset(&handled);
  sigaddset(&handled, SIGTERM);
  sigaddset(&handled, SIGINT);
  sigaddset(&handled, SIGCHLD);
  /* Blocked except inside sigsuspend, so a signal cannot slip in between the check and the wait. */
  if (sigprocmask(SIG_BLOCK, &handled, &waiting) || sigaction(SIGTERM, &stop, NULL) ||
      sigaction(SIGINT, &stop, NULL) || sigaction(SIGCHLD, &child, NULL)) {
    static const char msg[] = "pause: cannot install signal handlers\n";
    (void)!write(2, msg, sizeof msg - 1);
    return 1;
  }
  sigdelset(&waiting, SIGTERM);
  sigdelset(&waiting, SIGINT);
  sigdelset(&waiting, SIGCHLD);
  while (!stopping) sigsuspend(&waiting);
  return 0;
}
