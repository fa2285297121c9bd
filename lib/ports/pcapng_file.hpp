// A pcapng file with one interface, written by portmux itself for a capture of one VM port.
//
// DPDK 22.11's rte_pcapng_fdopen() writes an Interface Description Block for every *ethdev* and
// rte_pcapng_write_packets() maps each packet's ethdev port to one of them; a vhost-user VM is no ethdev,
// so neither fits. This file writes the Section Header Block and the one Interface Description Block (named
// after the VM) itself, then the Enhanced Packet Blocks that rte_pcapng_copy() builds in mbufs, and at the
// end an Interface Statistics Block. Block layouts: the pcapng specification (draft-tuexen-opsawg-pcapng).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "core/net_types.hpp"
#include "core/result.hpp"

struct rte_mbuf;

namespace portmux {

// What the Interface Description Block says of the captured port.
struct PcapngInterface {
    std::string name;         // if_name, e.g. "vm:web"
    std::string description;  // if_description
    std::optional<MacAddr> mac;
    uint32_t snaplen = 0;
};

class PcapngFile {
public:
    // Creates `path` (never an existing file: O_EXCL, mode 0600, as captures carry the VMs' traffic) and
    // writes the section header and the interface block. On failure nothing is left on disk.
    static Result<PcapngFile> create(const std::string& path, const std::string& application,
                                     const PcapngInterface& interface);

    PcapngFile(PcapngFile&& other) noexcept;
    PcapngFile& operator=(PcapngFile&& other) noexcept;
    PcapngFile(const PcapngFile&) = delete;
    PcapngFile& operator=(const PcapngFile&) = delete;
    ~PcapngFile();

    // Writes the Enhanced Packet Blocks held by `blocks` (mbufs made by rte_pcapng_copy and stamped with
    // stamp_packet_block), in order, with as few system calls as it can. Returns "" or what went wrong (the
    // file is unusable then). Does not free the mbufs.
    std::string write_blocks(rte_mbuf* const* blocks, unsigned count);
    // Closes the file after an Interface Statistics Block: frames the capture took and frames it lost
    // (isb_ifrecv, isb_ifdrop), and its start and end (nanoseconds since the epoch). Idempotent.
    void close(uint64_t received, uint64_t dropped, uint64_t start_ns, uint64_t end_ns);
    bool is_open() const { return fd_ >= 0; }

private:
    explicit PcapngFile(int fd) : fd_(fd) {}
    int fd_ = -1;
};

// Checks that `m` holds one Enhanced Packet Block as rte_pcapng_copy() lays it out (block type 6 at the
// start of the first segment, block length = packet length) and sets its interface id (our one interface)
// and its timestamp. rte_pcapng_copy() leaves the interface id unset (rte_pcapng_write_packets would
// fill it in from its ethdev table) and converts time with a process-wide base that it updates without
// synchronisation from every calling lcore, so the capture sets both itself. False: not such a block.
bool stamp_packet_block(rte_mbuf* m, uint32_t interface_id, uint64_t timestamp_ns);

}  // namespace portmux
