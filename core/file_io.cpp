#include "core/file_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <functional>
#include <thread>

#include "base/error.h"

namespace minidl {

namespace {

[[noreturn]] void fail(const char* op, const char* what, const std::string& path, int err) {
  throw ValueError(fmt::format("[{}] cannot {} '{}': {}", op, what, path, std::strerror(err)));
}

// pid, thread and a counter keep concurrent writers, in this process or others, apart.
std::string temp_name(const std::string& path) {
  static std::atomic<uint64_t> counter{0};
  return fmt::format("{}.tmp.{}.{:x}.{}", path, ::getpid(),
                     std::hash<std::thread::id>{}(std::this_thread::get_id()) & 0xffffff, counter++);
}

}  // namespace

std::string read_file(const std::string& path, const char* op) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(op, "open", path, errno);
  struct stat st {};
  if (::fstat(fd, &st) != 0 || S_ISDIR(st.st_mode)) {
    const int err = S_ISDIR(st.st_mode) ? EISDIR : errno;
    ::close(fd);
    fail(op, "read", path, err);
  }
  std::string out;
  if (S_ISREG(st.st_mode)) out.reserve(static_cast<size_t>(st.st_size));
  char buf[1 << 16];
  while (true) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      fail(op, "read", path, err);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

void write_file_atomically(const std::string& path, std::string_view data, const char* op) {
  const std::string tmp = temp_name(path);
  auto give_up = [&](const char* step, int err, bool created = true) {
    if (created) ::unlink(tmp.c_str());
    throw ValueError(fmt::format("[{}] cannot write '{}': {} the temporary file '{}' failed: {}", op,
                                 path, step, tmp, std::strerror(err)));
  };
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) give_up("creating", errno, /*created=*/false);
  for (size_t done = 0; done < data.size();) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = n == 0 ? EIO : errno;
      ::close(fd);
      give_up("writing", err);
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    const int err = errno;
    ::close(fd);
    give_up("syncing", err);
  }
  if (::close(fd) != 0) give_up("closing", errno);
  if (::rename(tmp.c_str(), path.c_str()) != 0) give_up("renaming", errno);
}

}  // namespace minidl
