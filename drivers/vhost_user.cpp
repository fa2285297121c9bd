// vhost-user ports through net_vhost.
#include "vhost_user.hpp"

#include <cerrno>
#include <cstring>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <fmt/format.h>

#include "core/startup_error.hpp"

namespace portmux {
namespace {

void make_directories(const std::string& dir, const std::string& what) {
    if (dir.empty() || dir == "/") return;
    struct stat st{};
    if (stat(dir.c_str(), &st) == 0) {
        if (!S_ISDIR(st.st_mode)) throw StartupError(fmt::format("{}: {} is not a directory", what, dir));
        return;
    }
    make_directories(dir.substr(0, dir.find_last_of('/')), what);
    if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST)
        throw StartupError(fmt::format("{}: cannot create directory {}: {}", what, dir, std::strerror(errno)));
}

bool socket_has_listener(const std::string& path) {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0) return false;
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    bool listening = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    close(fd);
    return listening;
}

}  // namespace

std::string vhost_devargs(const VmConfig& vm) {
    std::string args = fmt::format("net_vhost_{},iface={},queues=1", vm.name, vm.vhost);
    if (vm.vhost_mode == VhostMode::kClient) args += ",client=1";
    return args;
}

void prepare_vhost_socket(const VmConfig& vm) {
    std::string what = fmt::format("VM \"{}\": vhost socket {}", vm.name, vm.vhost);
    if (vm.vhost.size() >= sizeof(sockaddr_un{}.sun_path))
        throw StartupError(fmt::format("{}: path longer than {} bytes", what, sizeof(sockaddr_un{}.sun_path) - 1));
    if (vm.vhost_mode != VhostMode::kServer) return;
    std::string dir = vm.vhost.substr(0, vm.vhost.find_last_of('/'));
    make_directories(dir, what);
    if (access(dir.empty() ? "/" : dir.c_str(), W_OK) != 0)
        throw StartupError(fmt::format("{}: directory {} is not writable: {}", what, dir, std::strerror(errno)));
    struct stat st{};
    if (lstat(vm.vhost.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) throw StartupError(fmt::format("{}: exists and is not a socket", what));
        if (socket_has_listener(vm.vhost))
            throw StartupError(fmt::format("{}: another process is listening on it", what));
        unlink(vm.vhost.c_str());  // left by an earlier run that did not clean up
    }
}

}  // namespace portmux
