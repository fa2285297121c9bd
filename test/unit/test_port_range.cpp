// The range syntax "[tcp:|udp:]FROM[-TO]" and port spans.
#include <catch2/catch.hpp>

#include "core/port_range.hpp"

using namespace portmux;

TEST_CASE("port span: a single port and a FROM-TO interval parse, edges included") {
    auto one = PortSpan::parse("80");
    REQUIRE(one);
    CHECK(one->first == 80);
    CHECK(one->last == 80);
    auto span = PortSpan::parse("0-65535");
    REQUIRE(span);
    CHECK(span->first == 0);
    CHECK(span->last == 65535);
    CHECK(PortSpan::parse("65535")->first == 65535);
    CHECK(PortSpan::parse("7-7")->to_string() == "7");
    CHECK(PortSpan::parse("6000-6099")->to_string() == "6000-6099");
    CHECK(PortSpan::parse("0080")->first == 80);
}

TEST_CASE("port span: errors quote the input and say what is wrong") {
    CHECK(PortSpan::parse("90-80").error() == "\"90-80\": FROM is above TO");
    CHECK(PortSpan::parse("70000").error() == "\"70000\": port above 65535");
    CHECK(PortSpan::parse("65536").error() == "\"65536\": port above 65535");
    CHECK(PortSpan::parse("1-99999999999999999999").error() == "\"1-99999999999999999999\": port above 65535");
    CHECK(PortSpan::parse("80-").error() == "\"80-\": TO is missing");
    CHECK(PortSpan::parse("-80").error() == "\"-80\": FROM is missing");
    CHECK(PortSpan::parse("").error().rfind("\"\": empty", 0) == 0);
    for (const char* bad : {"+80", " 80", "80 ", "80 - 90", "0x50", "8a", "1-2-3", "80,81", "tcp:80"}) {
        INFO(bad);
        auto r = PortSpan::parse(bad);
        REQUIRE_FALSE(r);
        CHECK(r.error().rfind(std::string("\"") + bad + "\": ", 0) == 0);
    }
}

TEST_CASE("port span: overlap and containment include both bounds") {
    const PortSpan a{10, 20};
    CHECK(a.contains(10));
    CHECK(a.contains(20));
    CHECK_FALSE(a.contains(21));
    CHECK(a.overlaps(PortSpan{20, 30}));
    CHECK(a.overlaps(PortSpan{0, 10}));
    CHECK_FALSE(a.overlaps(PortSpan{21, 30}));
    CHECK_FALSE(a.overlaps(PortSpan{0, 9}));
}

TEST_CASE("port range: without a prefix the range covers TCP and UDP") {
    auto r = PortRange::parse("0-25");
    REQUIRE(r);
    CHECK(r->tcp);
    CHECK(r->udp);
    CHECK(r->covers(L4Proto::kTcp));
    CHECK(r->covers(L4Proto::kUdp));
    CHECK(r->to_string() == "0-25");
}

TEST_CASE("port range: tcp: and udp: prefixes select one protocol") {
    auto t = PortRange::parse("tcp:22");
    REQUIRE(t);
    CHECK(t->tcp);
    CHECK_FALSE(t->udp);
    CHECK(t->to_string() == "tcp:22");
    auto u = PortRange::parse("udp:6000-6099");
    REQUIRE(u);
    CHECK_FALSE(u->tcp);
    CHECK(u->udp);
    CHECK(u->ports == (PortSpan{6000, 6099}));
    CHECK(u->to_string() == "udp:6000-6099");
}

TEST_CASE("port range: the prefix is exact and lower case") {
    CHECK(PortRange::parse("sctp:1").error() == "\"sctp:1\": unknown protocol \"sctp\" (expected tcp: or udp:)");
    CHECK(PortRange::parse("TCP:1").error() == "\"TCP:1\": unknown protocol \"TCP\" (expected tcp: or udp:)");
    CHECK(PortRange::parse(":1").error() == "\":1\": unknown protocol \"\" (expected tcp: or udp:)");
    CHECK_FALSE(PortRange::parse("tcp: 1"));
    CHECK_FALSE(PortRange::parse("tcp:udp:1"));
    CHECK_FALSE(PortRange::parse("tcp:"));
}

TEST_CASE("port range: span errors quote the whole input, prefix included") {
    CHECK(PortRange::parse("tcp:70000").error() == "\"tcp:70000\": port above 65535");
    CHECK(PortRange::parse("udp:90-80").error() == "\"udp:90-80\": FROM is above TO");
    CHECK(PortRange::parse("90-80").error() == "\"90-80\": FROM is above TO");
}

TEST_CASE("port range: to_string round-trips through parse") {
    for (const char* text : {"0", "65535", "0-65535", "tcp:1-2", "udp:53", "1000-2000"}) {
        auto r = PortRange::parse(text);
        REQUIRE(r);
        CHECK(r->to_string() == text);
        CHECK(*PortRange::parse(r->to_string()) == *r);
    }
}

TEST_CASE("port range: ranges overlap only when they share a protocol and a port") {
    const auto r = [](const char* t) { return *PortRange::parse(t); };
    CHECK(r("0-25").overlaps(r("tcp:22")));
    CHECK(r("tcp:22").overlaps(r("0-25")));
    CHECK_FALSE(r("tcp:22").overlaps(r("udp:22")));
    CHECK(r("udp:22").overlaps(r("22")));
    CHECK_FALSE(r("0-25").overlaps(r("26-80")));
    CHECK(r("0-25").overlaps(r("25-80")));
}

TEST_CASE("l4 proto: names are tcp and udp") {
    CHECK(std::string(to_string(L4Proto::kTcp)) == "tcp");
    CHECK(std::string(to_string(L4Proto::kUdp)) == "udp");
}

TEST_CASE("range syntax: ADDRESS/RANGE names a range of another shared address") {
    auto r = PortRange::parse("192.0.2.20/tcp:80-89");
    REQUIRE(r);
    CHECK(r->address.to_string() == "192.0.2.20");
    CHECK(r->tcp);
    CHECK_FALSE(r->udp);
    CHECK(r->ports == PortSpan{80, 89});
    CHECK(r->to_string() == "192.0.2.20/tcp:80-89");
    CHECK_FALSE(r->on_first_address());
    CHECK(PortRange::parse("tcp:80")->on_first_address());
    CHECK(PortRange::parse("192.0.2.20/53")->to_string() == "192.0.2.20/53");

    // The same ports on two addresses are different ranges and do not overlap.
    CHECK_FALSE(PortRange::parse("192.0.2.20/tcp:80")->overlaps(*PortRange::parse("tcp:80")));
    CHECK(*PortRange::parse("192.0.2.20/tcp:80") != *PortRange::parse("tcp:80"));
    CHECK(PortRange::parse("192.0.2.20/tcp:80")->overlaps(*PortRange::parse("192.0.2.20/70-90")));

    for (const char* bad : {"192.0.2/tcp:80", "0.0.0.0/tcp:80", "/tcp:80", "2001:db8::1/tcp:80"}) {
        auto failed = PortRange::parse(bad);
        REQUIRE_FALSE(failed);
        CHECK_THAT(failed.error(), Catch::Contains("is not an IPv4 address"));
    }
    CHECK_THAT(PortRange::parse("192.0.2.20/tcp:90-80").error(), Catch::Contains("FROM is above TO"));
}
