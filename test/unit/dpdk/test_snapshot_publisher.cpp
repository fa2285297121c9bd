// Snapshot publication with RCU: a replaced snapshot outlives every reader that may hold it, and concurrent
// changes each wait for their own grace period without waiting for one another's.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>
#include <vector>

#include <rte_rcu_qsbr.h>

#include "control/switch_state.hpp"
#include "tables/snapshot.hpp"

using namespace portmux;

namespace {

std::unique_ptr<Snapshot> snapshot_with_table(uint64_t generation, std::weak_ptr<const PortOwnerTable>* watch) {
    auto snap = std::make_unique<Snapshot>();
    snap->generation = generation;
    auto table = std::make_shared<PortOwnerTable>();
    *watch = table;
    snap->table = table;
    return snap;
}

// A worker stand-in: registered as reader 0, online, reporting a quiescent state whenever `report` is set.
class Reader {
public:
    explicit Reader(SnapshotPublisher& publisher) : publisher_(publisher) {
        thread_ = std::thread([this] {
            rte_rcu_qsbr* rcu = publisher_.rcu();
            rte_rcu_qsbr_thread_register(rcu, 0);
            rte_rcu_qsbr_thread_online(rcu, 0);
            held_ = publisher_.current();
            ready_ = true;
            while (!stop_) {
                if (report_) {
                    held_ = publisher_.current();
                    rte_rcu_qsbr_quiescent(rcu, 0);
                }
                std::this_thread::yield();
            }
            rte_rcu_qsbr_thread_offline(rcu, 0);
            rte_rcu_qsbr_thread_unregister(rcu, 0);
        });
        while (!ready_) std::this_thread::yield();
    }
    ~Reader() {
        stop_ = true;
        thread_.join();
    }
    void start_reporting() { report_ = true; }

private:
    SnapshotPublisher& publisher_;
    std::thread thread_;
    std::atomic<bool> ready_{false}, report_{false}, stop_{false};
    std::atomic<const Snapshot*> held_{nullptr};
};

}  // namespace

TEST_CASE("snapshot publisher: a replaced snapshot is freed only after the reader holding it moved on", "[rcu]") {
    SnapshotPublisher publisher(1);
    std::weak_ptr<const PortOwnerTable> first, second;
    publisher.publish(snapshot_with_table(1, &first));  // nothing to wait for yet
    Reader reader(publisher);                           // holds generation 1, reports nothing

    const uint64_t token = publisher.install(snapshot_with_table(2, &second));
    CHECK(publisher.current()->generation == 2);  // in place at once, before the grace period
    auto waiting = std::async(std::launch::async, [&] { publisher.wait(token); });
    // However long it is given, the wait cannot end while the reader still holds generation 1.
    CHECK(waiting.wait_for(std::chrono::milliseconds(100)) == std::future_status::timeout);
    CHECK_FALSE(first.expired());
    reader.start_reporting();
    waiting.get();
    CHECK(first.expired());
    CHECK_FALSE(second.expired());
}

TEST_CASE("snapshot publisher: changes from several threads at once are all published, in order, and freed",
          "[rcu]") {
    Config config;
    config.shared_ip = *Ipv4Addr::parse("192.0.2.10");
    config.uplink.device = "net_null0";
    for (int i = 0; i < 2; ++i) {
        VmConfig vm;
        vm.name = i == 0 ? "a" : "b";
        vm.device = i == 0 ? "net_null1" : "net_null2";
        vm.mac = *MacAddr::parse(i == 0 ? "52:54:00:00:00:01" : "52:54:00:00:00:02");
        vm.ranges = {*PortRange::parse(i == 0 ? "tcp:1000-1999" : "tcp:2000-2999")};
        config.vms.push_back(vm);
    }
    SnapshotPublisher publisher(1);
    SwitchState state(config, publisher);
    state.publish_initial();
    Reader reader(publisher);
    reader.start_reporting();

    const uint64_t before = state.generation();
    constexpr int kThreads = 4, kChanges = 250;
    std::vector<std::thread> threads;
    std::atomic<int> failures{0};
    for (int t = 0; t < kThreads; ++t)
        threads.emplace_back([&, t] {
            // Each thread adds, moves and removes its own ranges; every answer must be a success whose
            // generation the published snapshot has reached when it returns.
            for (int i = 0; i < kChanges; ++i) {
                const PortRange r = *PortRange::parse("udp:" + std::to_string(10000 + t * 1000 + i));
                auto report = i % 2 == 0 ? state.add_range("a", r) : state.move_range(
                    *PortRange::parse("udp:" + std::to_string(10000 + t * 1000 + i - 1)), "b");
                if (!report || publisher.current()->generation < report->generation) ++failures;
            }
        });
    for (std::thread& t : threads) t.join();
    CHECK(failures == 0);
    CHECK(state.generation() == before + kThreads * kChanges);
    CHECK(publisher.current()->generation == state.generation());
    // Each thread's odd changes moved its even ranges to b.
    for (int t = 0; t < kThreads; ++t)
        for (int i = 0; i < kChanges; i += 2)
            CHECK(publisher.current()->table->lookup(L4Proto::kUdp, static_cast<uint16_t>(10000 + t * 1000 + i)) ==
                  vm_owner_id(1));
}
