// pcapng blocks written by hand (section header, interface description, interface statistics) and the
// Enhanced Packet Blocks of rte_pcapng_copy() written with writev. Little-endian host order, as
// rte_pcapng_copy() writes its blocks in host order and the section header's magic says which.
#include "ports/pcapng_file.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include <fcntl.h>
#include <limits.h>
#include <sys/uio.h>
#include <unistd.h>

#include <fmt/format.h>
#include <rte_mbuf.h>

namespace portmux {
namespace {

constexpr uint32_t kSectionHeaderBlock = 0x0A0D0D0A;
constexpr uint32_t kInterfaceDescriptionBlock = 1;
constexpr uint32_t kInterfaceStatisticsBlock = 5;
constexpr uint32_t kEnhancedPacketBlock = 6;
constexpr uint32_t kByteOrderMagic = 0x1A2B3C4D;
constexpr uint16_t kLinktypeEthernet = 1;

constexpr uint16_t kOptEnd = 0;
constexpr uint16_t kShbUserApplication = 4;
constexpr uint16_t kIfName = 2;
constexpr uint16_t kIfDescription = 3;
constexpr uint16_t kIfMacAddress = 6;
constexpr uint16_t kIfTimestampResolution = 9;
constexpr uint16_t kIsbStartTime = 2;
constexpr uint16_t kIsbEndTime = 3;
constexpr uint16_t kIsbIfRecv = 4;
constexpr uint16_t kIsbIfDrop = 5;

// The first bytes of an Enhanced Packet Block, as rte_pcapng_copy() prepends them.
struct EnhancedPacketHeader {
    uint32_t block_type;
    uint32_t block_length;
    uint32_t interface_id;
    uint32_t timestamp_high;
    uint32_t timestamp_low;
    uint32_t captured_length;
    uint32_t original_length;
};
static_assert(sizeof(EnhancedPacketHeader) == 28);

// Builds one block: type, length, body, options, length again; every option padded to 32 bits.
class BlockBuilder {
public:
    explicit BlockBuilder(uint32_t type) {
        put32(type);
        put32(0);  // the length, set by finish()
    }

    void put16(uint16_t v) { put(&v, sizeof(v)); }
    void put32(uint32_t v) { put(&v, sizeof(v)); }
    void put64(uint64_t v) { put(&v, sizeof(v)); }
    void option(uint16_t code, const void* data, uint16_t length) {
        put16(code);
        put16(length);
        put(data, length);
        bytes_.resize((bytes_.size() + 3) & ~size_t{3}, 0);
    }
    void option(uint16_t code, const std::string& text) {
        option(code, text.data(), static_cast<uint16_t>(std::min<size_t>(text.size(), UINT16_MAX)));
    }
    // A timestamp option: high 32 bits, then low 32 bits (the specification's order).
    void timestamp_option(uint16_t code, uint64_t ns) {
        const uint32_t halves[2] = {static_cast<uint32_t>(ns >> 32), static_cast<uint32_t>(ns)};
        option(code, halves, sizeof(halves));
    }
    std::vector<uint8_t> finish() {
        option(kOptEnd, nullptr, 0);
        const auto total = static_cast<uint32_t>(bytes_.size() + sizeof(uint32_t));
        put32(total);
        std::memcpy(bytes_.data() + sizeof(uint32_t), &total, sizeof(total));
        return std::move(bytes_);
    }

private:
    void put(const void* data, size_t length) {
        const auto* p = static_cast<const uint8_t*>(data);
        bytes_.insert(bytes_.end(), p, p + length);
    }
    std::vector<uint8_t> bytes_;
};

std::string write_all(int fd, const std::vector<uint8_t>& bytes) {
    size_t done = 0;
    while (done < bytes.size()) {
        const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return std::strerror(n < 0 ? errno : EIO);
        done += static_cast<size_t>(n);
    }
    return "";
}

std::vector<uint8_t> section_header(const std::string& application) {
    BlockBuilder block(kSectionHeaderBlock);
    block.put32(kByteOrderMagic);
    block.put16(1);  // version 1.0
    block.put16(0);
    block.put64(UINT64_MAX);  // section length not given
    block.option(kShbUserApplication, application);
    return block.finish();
}

std::vector<uint8_t> interface_description(const PcapngInterface& interface) {
    BlockBuilder block(kInterfaceDescriptionBlock);
    block.put16(kLinktypeEthernet);
    block.put16(0);
    block.put32(interface.snaplen);
    block.option(kIfName, interface.name);
    if (!interface.description.empty()) block.option(kIfDescription, interface.description);
    if (interface.mac) block.option(kIfMacAddress, interface.mac->bytes.data(), 6);
    const uint8_t nanoseconds = 9;  // timestamps are in units of 10^-9 s
    block.option(kIfTimestampResolution, &nanoseconds, 1);
    return block.finish();
}

}  // namespace

Result<PcapngFile> PcapngFile::create(const std::string& path, const std::string& application,
                                      const PcapngInterface& interface) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return Result<PcapngFile>::fail(fmt::format("cannot create \"{}\": {}", path, std::strerror(errno)));
    std::string failed = write_all(fd, section_header(application));
    if (failed.empty()) failed = write_all(fd, interface_description(interface));
    if (!failed.empty()) {
        ::close(fd);
        ::unlink(path.c_str());
        return Result<PcapngFile>::fail(fmt::format("cannot write \"{}\": {}", path, failed));
    }
    return Result<PcapngFile>::ok(PcapngFile(fd));
}

PcapngFile::PcapngFile(PcapngFile&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }

PcapngFile& PcapngFile::operator=(PcapngFile&& other) noexcept {
    if (this != &other) {
        if (fd_ >= 0) ::close(fd_);
        fd_ = other.fd_;
        other.fd_ = -1;
    }
    return *this;
}

PcapngFile::~PcapngFile() {
    if (fd_ >= 0) ::close(fd_);
}

std::string PcapngFile::write_blocks(rte_mbuf* const* blocks, unsigned count) {
    if (fd_ < 0) return "the file is closed";
    iovec iov[IOV_MAX];
    int used = 0;
    auto flush = [&]() -> std::string {
        // writev may write less than asked (a full disk, a signal): go on from where it stopped.
        int first = 0;
        while (first < used) {
            const ssize_t n = ::writev(fd_, iov + first, used - first);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return std::strerror(n < 0 ? errno : EIO);
            auto left = static_cast<size_t>(n);
            while (first < used && left >= iov[first].iov_len) left -= iov[first++].iov_len;
            if (left > 0) {
                iov[first].iov_base = static_cast<uint8_t*>(iov[first].iov_base) + left;
                iov[first].iov_len -= left;
            }
        }
        used = 0;
        return "";
    };
    for (unsigned i = 0; i < count; ++i) {
        if (used + blocks[i]->nb_segs > IOV_MAX) {
            std::string failed = flush();
            if (!failed.empty()) return failed;
        }
        for (const rte_mbuf* seg = blocks[i]; seg != nullptr; seg = seg->next) {
            iov[used].iov_base = rte_pktmbuf_mtod(seg, void*);
            iov[used].iov_len = rte_pktmbuf_data_len(seg);
            ++used;
        }
    }
    return flush();
}

void PcapngFile::close(uint64_t received, uint64_t dropped, uint64_t start_ns, uint64_t end_ns) {
    if (fd_ < 0) return;
    BlockBuilder block(kInterfaceStatisticsBlock);
    block.put32(0);  // interface id
    block.put32(static_cast<uint32_t>(end_ns >> 32));
    block.put32(static_cast<uint32_t>(end_ns));
    block.timestamp_option(kIsbStartTime, start_ns);
    block.timestamp_option(kIsbEndTime, end_ns);
    block.option(kIsbIfRecv, &received, sizeof(received));
    block.option(kIsbIfDrop, &dropped, sizeof(dropped));
    // Best effort: the packets are already in the file, a missing statistics block loses nothing of them.
    (void)write_all(fd_, block.finish());
    ::close(fd_);
    fd_ = -1;
}

bool stamp_packet_block(rte_mbuf* m, uint32_t interface_id, uint64_t timestamp_ns) {
    if (rte_pktmbuf_data_len(m) < sizeof(EnhancedPacketHeader)) return false;
    auto* header = rte_pktmbuf_mtod(m, EnhancedPacketHeader*);
    if (header->block_type != kEnhancedPacketBlock || header->block_length != rte_pktmbuf_pkt_len(m)) return false;
    header->interface_id = interface_id;
    header->timestamp_high = static_cast<uint32_t>(timestamp_ns >> 32);
    header->timestamp_low = static_cast<uint32_t>(timestamp_ns);
    return true;
}

}  // namespace portmux
