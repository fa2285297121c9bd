// VM captures (ports/vm_capture.hpp): the pcapng file they write, block by block; refusals that leave
// nothing behind; the MAX_PACKETS bound; and a stop while a worker stand-in is capturing under RCU.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_rcu_qsbr.h>

#include "ports/vm_capture.hpp"

using namespace portmux;

namespace {

// A private directory for one test, removed with everything in it.
struct TempDir {
    std::string path;
    TempDir() {
        char name[] = "/tmp/pmx-unit-capture-XXXXXX";
        REQUIRE(mkdtemp(name) != nullptr);
        path = name;
    }
    ~TempDir() { std::filesystem::remove_all(path); }
    std::string file(const char* name) const { return path + "/" + name; }
};

rte_mempool* source_pool() {
    static rte_mempool* pool = rte_pktmbuf_pool_create("test_capture_src", 511, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, 0);
    REQUIRE(pool != nullptr);
    return pool;
}

// A frame of `length` bytes whose bytes name it: byte i is (tag + i) % 251.
std::vector<uint8_t> frame_bytes(uint8_t tag, size_t length) {
    std::vector<uint8_t> bytes(length);
    for (size_t i = 0; i < length; ++i) bytes[i] = static_cast<uint8_t>((tag + i) % 251);
    return bytes;
}

// The frame in an mbuf chain with segments of at most `segment` bytes.
rte_mbuf* frame_mbuf(const std::vector<uint8_t>& bytes, size_t segment = 2048) {
    rte_mbuf* head = nullptr;
    for (size_t off = 0; off < bytes.size(); off += segment) {
        rte_mbuf* m = rte_pktmbuf_alloc(source_pool());
        REQUIRE(m != nullptr);
        const size_t n = std::min(segment, bytes.size() - off);
        std::memcpy(rte_pktmbuf_append(m, static_cast<uint16_t>(n)), bytes.data() + off, n);
        if (head == nullptr)
            head = m;
        else
            REQUIRE(rte_pktmbuf_chain(head, m) == 0);
    }
    return head;
}

struct Block {
    uint32_t type;
    std::vector<uint8_t> body;  // between the two length fields
};

uint32_t u32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}
uint16_t u16(const uint8_t* p) {
    uint16_t v;
    std::memcpy(&v, p, 2);
    return v;
}

std::vector<Block> read_blocks(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::vector<uint8_t> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<Block> blocks;
    size_t off = 0;
    while (off + 12 <= data.size()) {
        const uint32_t length = u32(&data[off + 4]);
        REQUIRE(length % 4 == 0);
        REQUIRE(off + length <= data.size());
        REQUIRE(u32(&data[off + length - 4]) == length);  // the trailing copy of the length
        blocks.push_back({u32(&data[off]), std::vector<uint8_t>(data.begin() + off + 8, data.begin() + off + length - 4)});
        off += length;
    }
    REQUIRE(off == data.size());
    return blocks;
}

// The options of a block body from `offset` on: code -> value.
std::vector<std::pair<uint16_t, std::vector<uint8_t>>> options(const std::vector<uint8_t>& body, size_t offset) {
    std::vector<std::pair<uint16_t, std::vector<uint8_t>>> out;
    while (offset + 4 <= body.size()) {
        const uint16_t code = u16(&body[offset]), length = u16(&body[offset + 2]);
        if (code == 0) break;
        REQUIRE(offset + 4 + length <= body.size());
        out.push_back({code, std::vector<uint8_t>(body.begin() + offset + 4, body.begin() + offset + 4 + length)});
        offset += 4 + ((length + 3u) & ~3u);
    }
    return out;
}

std::vector<uint8_t> option(const std::vector<std::pair<uint16_t, std::vector<uint8_t>>>& opts, uint16_t code) {
    for (const auto& o : opts)
        if (o.first == code) return o.second;
    return {};
}

struct Packet {
    uint32_t interface_id, captured, original, flags;
    std::vector<uint8_t> data;
};

Packet packet_of(const Block& b) {
    REQUIRE(b.type == 6);
    Packet p;
    p.interface_id = u32(&b.body[0]);
    p.captured = u32(&b.body[12]);
    p.original = u32(&b.body[16]);
    p.data.assign(b.body.begin() + 20, b.body.begin() + 20 + p.captured);
    auto flags = option(options(b.body, 20 + ((p.captured + 3u) & ~3u)), 2);
    REQUIRE(flags.size() == 4);
    p.flags = u32(flags.data());
    return p;
}

// Waits (without asserting on time) until the capture of `vm` is no longer running.
void wait_not_running(const VmCapture& capture, size_t vm) {
    for (int i = 0; i < 5000; ++i) {
        for (const CaptureStatus& s : capture.list())
            if (s.vm_index == vm && s.state != CaptureState::kRunning) return;
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    FAIL("the capture never finished");
}

void capture_frames(VmCapture& capture, size_t vm, CaptureDirection direction, const std::vector<rte_mbuf*>& frames) {
    capture.capture(vm, direction, frames.data(), static_cast<uint16_t>(frames.size()));
}

void free_all(std::vector<rte_mbuf*>& frames) {
    for (rte_mbuf* m : frames) rte_pktmbuf_free(m);
    frames.clear();
}

}  // namespace

TEST_CASE("vm capture: one interface named after the VM, the frames of both directions, statistics", "[capture]") {
    TempDir dir;
    VmCapture capture(nullptr);
    const std::string path = dir.file("web.pcapng");
    const MacAddr mac = *MacAddr::parse("52:54:00:12:34:01");
    REQUIRE(capture.start(3, "web", path, 5, kDefaultCaptureSnaplen, mac) == "");

    std::vector<std::vector<uint8_t>> from_vm = {frame_bytes(1, 60), frame_bytes(2, 1514), frame_bytes(3, 5000)};
    std::vector<std::vector<uint8_t>> to_vm = {frame_bytes(4, 61), frame_bytes(5, 99), frame_bytes(6, 100)};
    std::vector<rte_mbuf*> in, out, other;
    for (const auto& f : from_vm) in.push_back(frame_mbuf(f));
    for (const auto& f : to_vm) out.push_back(frame_mbuf(f));
    other.push_back(frame_mbuf(frame_bytes(7, 64)));
    capture_frames(capture, 4, CaptureDirection::kFromVm, other);  // not captured: ignored
    capture_frames(capture, 3, CaptureDirection::kFromVm, in);
    capture_frames(capture, 3, CaptureDirection::kToVm, out);  // only two of these fit in MAX_PACKETS
    // The originals are untouched (the capture only reads them).
    CHECK(rte_pktmbuf_pkt_len(in[2]) == 5000);
    CHECK(in[2]->nb_segs == 3);
    free_all(in);
    free_all(out);
    free_all(other);

    wait_not_running(capture, 3);
    auto listed = capture.list();
    REQUIRE(listed.size() == 1);
    CHECK(listed[0].state == CaptureState::kFinished);
    auto stopped = capture.stop(3);
    REQUIRE(stopped);
    CHECK(stopped->state == CaptureState::kFinished);
    CHECK(stopped->captured == 5);
    CHECK(stopped->written == 5);
    CHECK(stopped->dropped == 0);
    CHECK(capture.list().empty());
    CHECK_FALSE(capture.stop(3));

    CHECK((std::filesystem::status(path).permissions() & std::filesystem::perms::all) ==
          (std::filesystem::perms::owner_read | std::filesystem::perms::owner_write));
    std::vector<Block> blocks = read_blocks(path);
    REQUIRE(blocks.size() == 1 + 1 + 5 + 1);
    CHECK(blocks[0].type == 0x0A0D0D0A);
    CHECK(u32(&blocks[0].body[0]) == 0x1A2B3C4D);
    const Block& idb = blocks[1];
    REQUIRE(idb.type == 1);
    CHECK(u16(&idb.body[0]) == 1);  // LINKTYPE_ETHERNET
    CHECK(u32(&idb.body[4]) == kDefaultCaptureSnaplen);
    auto idb_options = options(idb.body, 8);
    const auto name = option(idb_options, 2);
    CHECK(std::string(name.begin(), name.end()) == "vm:web");
    CHECK(option(idb_options, 6) == std::vector<uint8_t>(mac.bytes.begin(), mac.bytes.end()));
    CHECK(option(idb_options, 9) == std::vector<uint8_t>{9});  // nanoseconds

    for (size_t i = 0; i < 5; ++i) {
        const Packet p = packet_of(blocks[2 + i]);
        const auto& expected = i < 3 ? from_vm[i] : to_vm[i - 3];
        CHECK(p.interface_id == 0);
        CHECK(p.original == expected.size());
        CHECK(p.data == expected);
        CHECK(p.flags == (i < 3 ? 1u : 2u));  // inbound: from the VM; outbound: to it
    }
    const Block& isb = blocks[7];
    REQUIRE(isb.type == 5);
    auto isb_options = options(isb.body, 12);
    const auto received = option(isb_options, 4), dropped = option(isb_options, 5);
    REQUIRE(received.size() == 8);
    REQUIRE(dropped.size() == 8);
    uint64_t value;
    std::memcpy(&value, received.data(), 8);
    CHECK(value == 5);
    std::memcpy(&value, dropped.data(), 8);
    CHECK(value == 0);
}

TEST_CASE("vm capture: the snap length cuts frames, the original length stays", "[capture]") {
    TempDir dir;
    VmCapture capture(nullptr);
    const std::string path = dir.file("short.pcapng");
    REQUIRE(capture.start(0, "db", path, 1, 64) == "");
    std::vector<rte_mbuf*> frames = {frame_mbuf(frame_bytes(9, 300))};
    capture_frames(capture, 0, CaptureDirection::kToVm, frames);
    free_all(frames);
    wait_not_running(capture, 0);
    REQUIRE(capture.stop(0));
    std::vector<Block> blocks = read_blocks(path);
    REQUIRE(blocks.size() == 4);
    const Packet p = packet_of(blocks[2]);
    CHECK(p.captured == 64);
    CHECK(p.original == 300);
    const std::vector<uint8_t> whole = frame_bytes(9, 300);
    CHECK(p.data == std::vector<uint8_t>(whole.begin(), whole.begin() + 64));
}

TEST_CASE("vm capture: refusals change nothing and leave no file", "[capture]") {
    TempDir dir;
    VmCapture capture(nullptr);
    CHECK(capture.start(1, "web", "web.pcapng", 10, kDefaultCaptureSnaplen).find("absolute") != std::string::npos);
    CHECK(capture.start(1, "web", dir.file("none/web.pcapng"), 10, kDefaultCaptureSnaplen)
              .find("No such file or directory") != std::string::npos);
    CHECK(capture.start(1, "web", dir.file("a"), 0, kDefaultCaptureSnaplen).find("MAX_PACKETS") != std::string::npos);
    CHECK(capture.start(1, "web", dir.file("a"), kMaxCapturePackets + 1, kDefaultCaptureSnaplen) != "");
    CHECK(capture.start(1, "web", dir.file("a"), 10, 10) != "");
    CHECK(capture.start(kMaxVms, "web", dir.file("a"), 10, kDefaultCaptureSnaplen) != "");
    {
        std::ofstream existing(dir.file("exists"));
        existing << "keep me";
    }
    CHECK(capture.start(1, "web", dir.file("exists"), 10, kDefaultCaptureSnaplen).find("File exists") !=
          std::string::npos);
    CHECK(capture.list().empty());
    CHECK(std::filesystem::file_size(dir.file("exists")) == 7);
    CHECK(std::distance(std::filesystem::directory_iterator(dir.path), std::filesystem::directory_iterator()) == 1);

    for (size_t vm = 0; vm < kMaxCaptures; ++vm)
        REQUIRE(capture.start(vm, "vm" + std::to_string(vm), dir.file(("c" + std::to_string(vm)).c_str()), 10,
                              kDefaultCaptureSnaplen) == "");
    CHECK(capture.start(0, "vm0", dir.file("again"), 10, kDefaultCaptureSnaplen).find("already captured") !=
          std::string::npos);
    CHECK(capture.start(kMaxCaptures, "one-more", dir.file("more"), 10, kDefaultCaptureSnaplen).find("stop one") !=
          std::string::npos);
    CHECK(capture.list().size() == kMaxCaptures);
    CHECK_FALSE(std::filesystem::exists(dir.file("again")));
    CHECK_FALSE(std::filesystem::exists(dir.file("more")));
    auto stopped = capture.stop(1);
    REQUIRE(stopped);
    CHECK(stopped->state == CaptureState::kStopped);
    CHECK(stopped->written == 0);
    // Its room is free again; the destructor stops the rest.
    CHECK(capture.start(kMaxCaptures, "one-more", dir.file("more"), 10, kDefaultCaptureSnaplen) == "");
}

TEST_CASE("vm capture: a stop while a worker captures waits for it; every frame is written or counted lost",
          "[capture][rcu]") {
    TempDir dir;
    const size_t size = rte_rcu_qsbr_get_memsize(1);
    auto* rcu = static_cast<rte_rcu_qsbr*>(std::aligned_alloc(RTE_CACHE_LINE_SIZE, (size + 63) / 64 * 64));
    REQUIRE(rcu != nullptr);
    REQUIRE(rte_rcu_qsbr_init(rcu, 1) == 0);
    {
        VmCapture capture(rcu);
        REQUIRE(capture.start(2, "busy", dir.file("busy.pcapng"), kMaxCapturePackets, kDefaultCaptureSnaplen) == "");
        std::atomic<bool> stop{false};
        std::atomic<uint64_t> bursts{0};
        std::thread worker([&] {
            rte_rcu_qsbr_thread_register(rcu, 0);
            rte_rcu_qsbr_thread_online(rcu, 0);
            std::vector<rte_mbuf*> frames;
            for (uint8_t i = 0; i < 8; ++i) frames.push_back(frame_mbuf(frame_bytes(i, 200)));
            while (!stop.load()) {
                capture_frames(capture, 2, CaptureDirection::kFromVm, frames);
                bursts.fetch_add(1);
                rte_rcu_qsbr_quiescent(rcu, 0);
            }
            free_all(frames);
            rte_rcu_qsbr_thread_offline(rcu, 0);
            rte_rcu_qsbr_thread_unregister(rcu, 0);
        });
        while (bursts.load() < 200) std::this_thread::yield();
        auto stopped = capture.stop(2);
        stop.store(true);
        worker.join();
        REQUIRE(stopped);
        CHECK(stopped->state == CaptureState::kStopped);
        CHECK(stopped->captured > 0);
        CHECK(stopped->written + stopped->dropped == stopped->captured);
        std::vector<Block> blocks = read_blocks(dir.file("busy.pcapng"));
        CHECK(blocks.size() == 2 + stopped->written + 1);
    }
    std::free(rcu);
}
