// The range registry and the direct table, checked against a slow vector-scan reference on random operations.
#include <catch2/catch.hpp>

#include <cstring>

#include <algorithm>
#include <chrono>
#include <memory>
#include <random>

#include "core/port_owners.hpp"

using namespace portmux;

namespace {

PortRange range(const char* text) { return *PortRange::parse(text); }

// Obviously correct: a plain list, every question answered by scanning all of it.
struct ReferenceRegistry {
    std::vector<OwnedRange> entries;

    bool conflicts(const PortRange& r) const {
        for (const auto& e : entries)
            if (e.range.overlaps(r)) return true;
        return false;
    }
    bool add(const PortRange& r, OwnerId owner) {
        if (conflicts(r)) return false;
        entries.push_back({r, owner});
        return true;
    }
    std::optional<OwnerId> remove(const PortRange& r) {
        for (size_t i = 0; i < entries.size(); ++i)
            if (entries[i].range == r) {
                const OwnerId owner = entries[i].owner;
                entries.erase(entries.begin() + static_cast<long>(i));
                return owner;
            }
        return std::nullopt;
    }
    std::optional<OwnerId> reassign(const PortRange& r, OwnerId owner) {
        for (auto& e : entries)
            if (e.range == r) {
                const OwnerId former = e.owner;
                e.owner = owner;
                return former;
            }
        return std::nullopt;
    }
    OwnerId lookup(L4Proto proto, uint16_t port) const {
        for (const auto& e : entries)
            if (e.range.covers(proto) && e.range.ports.contains(port)) return e.owner;
        return kNoOwner;
    }
};

PortRange random_range(std::mt19937& rng) {
    PortRange r;
    const int kind = static_cast<int>(rng() % 3);
    r.tcp = kind != 2;
    r.udp = kind != 1;
    // Mostly small ranges in a narrow window (many collisions), sometimes the edges 0 and 65535.
    const unsigned choice = rng() % 10;
    unsigned first = choice == 0 ? 0 : choice == 1 ? 65535 - rng() % 20 : 1000 + rng() % 400;
    unsigned last = std::min<unsigned>(65535u, first + (rng() % 4 == 0 ? rng() % 60 : rng() % 5));
    r.ports = PortSpan{static_cast<uint16_t>(first), static_cast<uint16_t>(last)};
    return r;
}

}  // namespace

TEST_CASE("range registry: a port on either bound goes to the owner, the ports beside it do not") {
    RangeRegistry reg;
    REQUIRE_FALSE(reg.add(range("tcp:26-80"), 2));
    CHECK(reg.lookup(L4Proto::kTcp, 26) == 2);
    CHECK(reg.lookup(L4Proto::kTcp, 80) == 2);
    CHECK(reg.lookup(L4Proto::kTcp, 25) == kNoOwner);
    CHECK(reg.lookup(L4Proto::kTcp, 81) == kNoOwner);
    CHECK(reg.lookup(L4Proto::kUdp, 50) == kNoOwner);
}

TEST_CASE("range registry: ports 0 and 65535 can be owned") {
    RangeRegistry reg;
    REQUIRE_FALSE(reg.add(range("0"), 2));
    REQUIRE_FALSE(reg.add(range("65535"), 3));
    auto table = std::make_unique<PortOwnerTable>();
    reg.fill(*table);
    for (L4Proto p : {L4Proto::kTcp, L4Proto::kUdp}) {
        CHECK(table->lookup(p, 0) == 2);
        CHECK(table->lookup(p, 1) == kNoOwner);
        CHECK(table->lookup(p, 65534) == kNoOwner);
        CHECK(table->lookup(p, 65535) == 3);
    }
}

TEST_CASE("range registry: adjacent ranges of different owners are accepted") {
    RangeRegistry reg;
    CHECK_FALSE(reg.add(range("0-25"), 2));
    CHECK_FALSE(reg.add(range("tcp:26-80"), 3));
    CHECK(reg.add(range("26"), 4));  // tcp:26 is taken
    CHECK(reg.lookup(L4Proto::kTcp, 25) == 2);
    CHECK(reg.lookup(L4Proto::kTcp, 26) == 3);
}

TEST_CASE("range registry: tcp and udp of the same port belong to different owners") {
    RangeRegistry reg;
    CHECK_FALSE(reg.add(range("tcp:53"), kHostOwner));
    CHECK_FALSE(reg.add(range("udp:53"), 2));
    CHECK(reg.lookup(L4Proto::kTcp, 53) == kHostOwner);
    CHECK(reg.lookup(L4Proto::kUdp, 53) == 2);
    auto conflict = reg.add(range("53"), 3);
    REQUIRE(conflict);
    CHECK(conflict->existing.range == range("tcp:53"));
    CHECK(conflict->existing.owner == kHostOwner);
    CHECK(conflict->proto == L4Proto::kTcp);
    CHECK(conflict->port == 53);
    CHECK(reg.size() == 2);
}

TEST_CASE("range registry: a conflict reports the lowest shared port and changes nothing") {
    RangeRegistry reg;
    REQUIRE_FALSE(reg.add(range("udp:100-200"), 2));
    REQUIRE_FALSE(reg.add(range("tcp:150-160"), 3));
    auto c = reg.add(range("120-170"), 4);
    REQUIRE(c);
    CHECK(c->proto == L4Proto::kUdp);
    CHECK(c->port == 120);
    CHECK(c->existing.owner == 2);
    auto c2 = reg.find_conflict(range("tcp:10-155"));
    REQUIRE(c2);
    CHECK(c2->port == 150);
    CHECK(c2->existing.owner == 3);
    CHECK(reg.size() == 2);
    CHECK(reg.lookup(L4Proto::kTcp, 120) == kNoOwner);
    // Overlapping an owner's own range is a conflict too.
    CHECK(reg.add(range("udp:200-210"), 2));
}

TEST_CASE("range registry: remove, reassign and owner_of need the exact range") {
    RangeRegistry reg;
    REQUIRE_FALSE(reg.add(range("1000-1999"), 2));
    CHECK_FALSE(reg.remove(range("tcp:1000-1999")));
    CHECK_FALSE(reg.remove(range("1000-1998")));
    CHECK_FALSE(reg.owner_of(range("1000")));
    CHECK(reg.owner_of(range("1000-1999")) == OwnerId{2});
    CHECK(reg.reassign(range("1000-1999"), 5) == OwnerId{2});
    CHECK(reg.lookup(L4Proto::kUdp, 1500) == 5);
    CHECK_FALSE(reg.reassign(range("1000-2000"), 6));
    CHECK(reg.remove(range("1000-1999")) == OwnerId{5});
    CHECK(reg.lookup(L4Proto::kUdp, 1500) == kNoOwner);
    CHECK(reg.size() == 0);
    // The freed ports can be owned again, in another shape.
    CHECK_FALSE(reg.add(range("tcp:1500"), 3));
}

TEST_CASE("range registry: remove_owner removes every range of that owner only") {
    RangeRegistry reg;
    REQUIRE_FALSE(reg.add(range("10"), 2));
    REQUIRE_FALSE(reg.add(range("tcp:20-30"), 2));
    REQUIRE_FALSE(reg.add(range("udp:20-30"), 3));
    CHECK(reg.remove_owner(2) == 2);
    CHECK(reg.size() == 1);
    CHECK(reg.lookup(L4Proto::kTcp, 25) == kNoOwner);
    CHECK(reg.lookup(L4Proto::kUdp, 25) == 3);
    CHECK(reg.remove_owner(9) == 0);
}

TEST_CASE("range registry: list is sorted by first port, then tcp-only, udp-only, both") {
    RangeRegistry reg;
    REQUIRE_FALSE(reg.add(range("500"), 2));
    REQUIRE_FALSE(reg.add(range("udp:80"), 3));
    REQUIRE_FALSE(reg.add(range("tcp:80-90"), 2));
    REQUIRE_FALSE(reg.add(range("7"), 4));
    auto all = reg.list();
    REQUIRE(all.size() == 4);
    CHECK(all[0].range == range("7"));
    CHECK(all[1].range == range("tcp:80-90"));
    CHECK(all[2].range == range("udp:80"));
    CHECK(all[3].range == range("500"));
    auto mine = reg.list(2);
    REQUIRE(mine.size() == 2);
    CHECK(mine[0].range == range("tcp:80-90"));
    CHECK(mine[1].range == range("500"));
}

TEST_CASE("range registry: fill clears ports that are no longer owned") {
    RangeRegistry reg;
    auto table = std::make_unique<PortOwnerTable>();
    std::fill(&table->owner[0][0], &table->owner[0][0] + 2 * 65536, OwnerId{77});
    REQUIRE_FALSE(reg.add(range("tcp:5"), 2));
    reg.fill(*table);
    CHECK(table->lookup(L4Proto::kTcp, 5) == 2);
    CHECK(table->lookup(L4Proto::kTcp, 4) == kNoOwner);
    CHECK(table->lookup(L4Proto::kUdp, 5) == kNoOwner);
}

TEST_CASE("range registry: random add/remove/reassign sequences agree with the reference everywhere") {
    const uint32_t seed = GENERATE(1u, 2u, 3u, 4u, 5u, 6u, 7u, 8u);
    std::mt19937 rng(seed);
    RangeRegistry reg;
    ReferenceRegistry ref;
    auto table = std::make_unique<PortOwnerTable>();
    for (int step = 0; step < 400; ++step) {
        const unsigned op = rng() % 10;
        if (op < 6) {
            const PortRange r = random_range(rng);
            const OwnerId owner = static_cast<OwnerId>(1 + rng() % 6);
            const bool ref_ok = ref.add(r, owner);
            auto conflict = reg.add(r, owner);
            INFO("step " << step << " add " << r.to_string());
            REQUIRE(ref_ok == !conflict.has_value());
            if (conflict) {
                // The reported conflict is real: that range exists and covers the reported protocol and port.
                CHECK(conflict->existing.range.covers(conflict->proto));
                CHECK(conflict->existing.range.ports.contains(conflict->port));
                CHECK(r.covers(conflict->proto));
                CHECK(r.ports.contains(conflict->port));
                CHECK(ref.lookup(conflict->proto, conflict->port) == conflict->existing.owner);
                // And it is the lowest shared port.
                for (unsigned port = r.ports.first; port < conflict->port; ++port)
                    for (L4Proto p : {L4Proto::kTcp, L4Proto::kUdp})
                        if (r.covers(p)) CHECK(ref.lookup(p, static_cast<uint16_t>(port)) == kNoOwner);
            }
        } else if (op < 8 && !ref.entries.empty()) {
            // Remove an existing range, or (sometimes) a near miss that must not match.
            PortRange r = ref.entries[rng() % ref.entries.size()].range;
            if (rng() % 4 == 0 && r.ports.last < 65535) ++r.ports.last;
            INFO("step " << step << " remove " << r.to_string());
            REQUIRE(reg.remove(r) == ref.remove(r));
        } else if (!ref.entries.empty()) {
            PortRange r = ref.entries[rng() % ref.entries.size()].range;
            // Sometimes the same ports with other protocols: not the registered range.
            if (rng() % 4 == 0) {
                if (r.tcp && r.udp)
                    r.udp = false;
                else
                    r.tcp = r.udp = true;
            }
            const OwnerId owner = static_cast<OwnerId>(1 + rng() % 6);
            INFO("step " << step << " reassign " << r.to_string());
            REQUIRE(reg.reassign(r, owner) == ref.reassign(r, owner));
        }
        REQUIRE(reg.size() == ref.entries.size());
        if (step % 50 == 49) {
            reg.fill(*table);
            for (L4Proto p : {L4Proto::kTcp, L4Proto::kUdp})
                for (unsigned port = 0; port <= 65535; ++port) {
                    const OwnerId want = ref.lookup(p, static_cast<uint16_t>(port));
                    if (table->lookup(p, static_cast<uint16_t>(port)) != want ||
                        reg.lookup(p, static_cast<uint16_t>(port)) != want) {
                        FAIL("step " << step << " " << to_string(p) << ":" << port << " want " << want << " table "
                                     << table->lookup(p, static_cast<uint16_t>(port)) << " lookup "
                                     << reg.lookup(p, static_cast<uint16_t>(port)));
                    }
                }
        }
    }
    // list() holds exactly the reference's ranges, in order.
    auto listed = reg.list();
    REQUIRE(listed.size() == ref.entries.size());
    for (size_t i = 1; i < listed.size(); ++i) CHECK(listed[i - 1].range.ports.first <= listed[i].range.ports.first);
    for (const auto& e : ref.entries) CHECK(reg.owner_of(e.range) == e.owner);
}

TEST_CASE("range registry: tens of thousands of ranges are added, looked up and filled quickly") {
    RangeRegistry reg;
    const auto start = std::chrono::steady_clock::now();
    // 32,768 two-port TCP ranges and as many single-port UDP ranges, each VM a few.
    for (unsigned i = 0; i < 32768; ++i) {
        PortRange t;
        t.udp = false;
        t.ports = PortSpan{static_cast<uint16_t>(2 * i), static_cast<uint16_t>(2 * i + 1)};
        REQUIRE_FALSE(reg.add(t, vm_owner_id(i % 4000)));
        PortRange u;
        u.tcp = false;
        u.ports = PortSpan{static_cast<uint16_t>(2 * i), static_cast<uint16_t>(2 * i)};
        REQUIRE_FALSE(reg.add(u, vm_owner_id(i % 4000)));
    }
    CHECK(reg.add(range("40000"), 2).has_value());
    auto table = std::make_unique<PortOwnerTable>();
    reg.fill(*table);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    CHECK(seconds < 1.0);
    CHECK(reg.size() == 65536);
    CHECK(table->lookup(L4Proto::kTcp, 65535) == vm_owner_id(32767 % 4000));
    CHECK(table->lookup(L4Proto::kUdp, 65535) == kNoOwner);
    CHECK(reg.lookup(L4Proto::kUdp, 65534) == vm_owner_id(32767 % 4000));
}

TEST_CASE("range registry: a copy patched over each changed range equals a full fill") {
    const uint32_t seed = GENERATE(7u, 11u, 2024u);
    std::mt19937 rng(seed);
    RangeRegistry registry;
    auto full = std::make_unique<PortOwnerTable>();
    auto patched = std::make_unique<PortOwnerTable>();
    registry.fill(*patched);
    std::vector<PortRange> added;
    for (int step = 0; step < 600; ++step) {
        PortRange changed;
        const int op = static_cast<int>(rng() % 3);
        if (op == 0 || added.empty()) {
            changed = random_range(rng);
            if (registry.add(changed, static_cast<OwnerId>(2 + rng() % 5))) continue;  // overlapped: no change
            added.push_back(changed);
        } else {
            const size_t i = rng() % added.size();
            changed = added[i];
            if (op == 1) {
                REQUIRE(registry.remove(changed));
                added.erase(added.begin() + static_cast<std::ptrdiff_t>(i));
            } else {
                REQUIRE(registry.reassign(changed, static_cast<OwnerId>(2 + rng() % 5)));
            }
        }
        registry.fill(*patched, changed);
        registry.fill(*full);
        INFO("seed " << seed << " step " << step << " range " << changed.to_string());
        REQUIRE(std::memcmp(full.get(), patched.get(), sizeof(PortOwnerTable)) == 0);
    }
}

TEST_CASE("range registry: each shared address has its own ranges and its own table") {
    RangeRegistry reg;
    const PortRange second = range("192.0.2.20/tcp:80-89");
    REQUIRE_FALSE(reg.add(range("tcp:80-89"), 2));
    REQUIRE_FALSE(reg.add(second, 3));  // same ports, another address: no conflict
    REQUIRE_FALSE(reg.add(range("192.0.2.30/tcp:85"), 4));
    auto conflict = reg.add(range("192.0.2.20/tcp:89-95"), 5);
    REQUIRE(conflict);
    CHECK(conflict->existing.range == second);
    CHECK(conflict->port == 89);

    Ipv4Addr a20 = *Ipv4Addr::parse("192.0.2.20");
    Ipv4Addr a30 = *Ipv4Addr::parse("192.0.2.30");
    CHECK(reg.lookup(L4Proto::kTcp, 85) == 2);
    CHECK(reg.lookup(L4Proto::kTcp, 85, a20) == 3);
    CHECK(reg.lookup(L4Proto::kTcp, 85, a30) == 4);
    CHECK(reg.lookup(L4Proto::kTcp, 86, a30) == kNoOwner);
    CHECK(reg.lookup(L4Proto::kTcp, 90, a20) == kNoOwner);

    auto first_table = std::make_unique<PortOwnerTable>();
    auto second_table = std::make_unique<PortOwnerTable>();
    reg.fill(*first_table);
    reg.fill(*second_table, a20);
    CHECK(first_table->lookup(L4Proto::kTcp, 80) == 2);
    CHECK(second_table->lookup(L4Proto::kTcp, 80) == 3);
    CHECK(second_table->lookup(L4Proto::kTcp, 90) == kNoOwner);

    // A window patches from its own address's ranges only.
    REQUIRE(reg.reassign(range("192.0.2.30/tcp:85"), 6));
    CHECK(reg.lookup(L4Proto::kTcp, 85, a30) == 6);
    CHECK(reg.lookup(L4Proto::kTcp, 85, a20) == 3);
    CHECK(reg.remove(range("192.0.2.20/tcp:80-89")) == std::optional<OwnerId>(3));
    reg.fill(*second_table, second);
    CHECK(second_table->lookup(L4Proto::kTcp, 85) == kNoOwner);
    CHECK(reg.lookup(L4Proto::kTcp, 85) == 2);
    CHECK(reg.list().front().range == range("tcp:80-89"));  // the first address lists first
}
