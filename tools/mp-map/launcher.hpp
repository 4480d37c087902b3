// mp-map --exec: the process that starts a worker's commands, and what it promises.
//
// Nothing a command starts may outlive mp-map, however mp-map ends (SIGKILL included),
// and commands must be able to use the terminal (stty, reading /dev/tty, writing under
// `stty tostop`) as they do under `xargs -P`. The second rules out what would make the
// first easy, a process group per command: only one group is the terminal's foreground
// group, and a command in any other group is stopped by SIGTTIN/SIGTTOU. So commands
// stay in mp-map's own process group, as xargs keeps them, and their descendants are
// found by ancestry instead:
//
// - Each worker forks one launcher, a child subreaper (PR_SET_CHILD_SUBREAPER) that
//   starts the worker's commands. Whatever a command leaves behind (a background job,
//   a double-forked daemon, a process that called setsid) stays in the launcher's
//   subtree, re-parented to the launcher when its own parent dies.
// - When a command exits, the launcher kills what remains of its subtree before it
//   reports the exit status, so the command's output pipe also ends then.
// - The launcher learns that its worker is gone (mp-map was killed with any signal,
//   SIGKILL included, and its workers died with it; or the pool terminated the worker)
//   from end-of-file on their socket, which no other process holds. It then kills its
//   whole subtree and exits. It ignores the signals a terminal or `kill` sends to the
//   whole process group (SIGINT, SIGTERM, SIGHUP, ...), so that it is never killed
//   before its cleanup; the commands themselves get those signals with the default
//   action restored.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace mp_map::launcher {

// Starts `program` with `args` (args[0] is argv[0]) through the calling process's
// launcher, which is forked at the first call (and again if it died): stdin from
// /dev/null, stdout to `stdout_fd`, stderr inherited, every signal's default action
// restored. One command at a time per process. Throws std::system_error naming what
// could not be started.
void start(const std::string& program, const std::vector<std::string>& args, int stdout_fd);

// The descriptor to poll (POLLIN) for the outcome of the command start() started.
int event_fd();

// Asks the launcher to kill the command and everything it started (on a timeout);
// finish() still returns its status. Does not wait.
void kill_command();

// Waits for the command to end, after its leftover descendants were killed; returns
// its wait status. Throws std::system_error if it could not be started (naming the
// errno and the step) or if the launcher died.
int finish();

}  // namespace mp_map::launcher
