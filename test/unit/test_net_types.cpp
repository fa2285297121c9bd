// Text forms of MAC, IPv4, IPv6 addresses and IP prefixes.
#include <catch2/catch.hpp>

#include "core/net_types.hpp"

using namespace portmux;

TEST_CASE("mac: colon and dash forms parse, any case, and print lower-case with colons") {
    auto a = MacAddr::parse("52:54:00:AB:cd:01");
    REQUIRE(a);
    CHECK(a->bytes == std::array<uint8_t, 6>{0x52, 0x54, 0x00, 0xab, 0xcd, 0x01});
    CHECK(a->to_string() == "52:54:00:ab:cd:01");
    auto b = MacAddr::parse("52-54-00-ab-cd-01");
    REQUIRE(b);
    CHECK(*b == *a);
}

TEST_CASE("mac: malformed text is refused with the input quoted") {
    for (const char* bad : {"", "52:54:00:12:34", "52:54:00:12:34:01:02", "52:54:00:12:34:0g", "52:54-00:12:34:01",
                            "5:54:00:12:34:011", " 52:54:00:12:34:01", "52.54.00.12.34.01"}) {
        INFO(bad);
        auto r = MacAddr::parse(bad);
        REQUIRE_FALSE(r);
        CHECK(r.error().rfind(std::string("\"") + bad + "\": not a MAC address", 0) == 0);
    }
}

TEST_CASE("mac: zero and multicast are recognised") {
    CHECK(MacAddr::parse("00:00:00:00:00:00")->is_zero());
    CHECK_FALSE(MacAddr::parse("00:00:00:00:00:01")->is_zero());
    CHECK(MacAddr::parse("01:00:5e:00:00:01")->is_multicast());
    CHECK_FALSE(MacAddr::parse("02:00:5e:00:00:01")->is_multicast());
}

TEST_CASE("ipv4: a dotted quad parses into network byte order") {
    auto a = Ipv4Addr::parse("192.0.2.10");
    REQUIRE(a);
    CHECK(a->bytes == std::array<uint8_t, 4>{192, 0, 2, 10});
    CHECK(a->to_string() == "192.0.2.10");
    uint32_t be = a->as_be32();
    CHECK(reinterpret_cast<const uint8_t*>(&be)[0] == 192);
    CHECK(reinterpret_cast<const uint8_t*>(&be)[3] == 10);
    CHECK(Ipv4Addr::parse("0.0.0.0"));
    CHECK(Ipv4Addr::parse("255.255.255.255"));
}

TEST_CASE("ipv4: anything but four decimal octets 0..255 is refused") {
    for (const char* bad : {"", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.-4", "1.2.3.4 ", "01.2.3.4", "1..3.4",
                            "a.b.c.d", "1.2.3.4/32", "0x1.2.3.4", "1.2.3.1000"}) {
        INFO(bad);
        auto r = Ipv4Addr::parse(bad);
        REQUIRE_FALSE(r);
        CHECK(r.error().find("not an IPv4 address") != std::string::npos);
    }
}

TEST_CASE("ipv6: text forms parse and print in the canonical RFC 5952 form") {
    auto a = Ipv6Addr::parse("2001:0DB8:0000:0000:0000:0000:0000:0010");
    REQUIRE(a);
    CHECK(a->bytes[0] == 0x20);
    CHECK(a->bytes[1] == 0x01);
    CHECK(a->bytes[15] == 0x10);
    CHECK(a->to_string() == "2001:db8::10");
    CHECK(Ipv6Addr::parse("::")->to_string() == "::");
    CHECK(Ipv6Addr::parse("::ffff:192.0.2.1"));
    for (const char* bad : {"", "2001:db8::g", "1:2:3:4:5:6:7:8:9", "192.0.2.1", "fe80::1%eth0", "2001:db8::1/64"}) {
        INFO(bad);
        CHECK_FALSE(Ipv6Addr::parse(bad));
    }
}

TEST_CASE("prefix: IPv4 and IPv6 prefixes parse; a bare address is a host prefix") {
    auto a = IpPrefix::parse("203.0.113.0/24");
    REQUIRE(a);
    CHECK_FALSE(a->is_v6);
    CHECK(a->length == 24);
    CHECK(a->to_string() == "203.0.113.0/24");
    auto h = IpPrefix::parse("192.0.2.1");
    REQUIRE(h);
    CHECK(h->length == 32);
    CHECK(*h == *IpPrefix::parse("192.0.2.1/32"));
    auto b = IpPrefix::parse("2001:db8::/32");
    REQUIRE(b);
    CHECK(b->is_v6);
    CHECK(b->length == 32);
    CHECK(b->to_string() == "2001:db8::/32");
    CHECK(IpPrefix::parse("::/0")->length == 0);
    CHECK(IpPrefix::parse("0.0.0.0/0")->length == 0);
    CHECK(IpPrefix::parse("2001:db8::1")->length == 128);
}

TEST_CASE("prefix: set host bits are refused and the message proposes the network") {
    auto r = IpPrefix::parse("192.0.2.1/24");
    REQUIRE_FALSE(r);
    CHECK(r.error() == "\"192.0.2.1/24\": host bits are set (did you mean 192.0.2.0/24?)");
    auto r6 = IpPrefix::parse("2001:db8::1/64");
    REQUIRE_FALSE(r6);
    CHECK(r6.error() == "\"2001:db8::1/64\": host bits are set (did you mean 2001:db8::/64?)");
    // A non-octet boundary: 10.0.0.128/25 is fine, 10.0.0.64/25 is not.
    CHECK(IpPrefix::parse("10.0.0.128/25"));
    CHECK_FALSE(IpPrefix::parse("10.0.0.64/25"));
}

TEST_CASE("prefix: a length beyond the address size or not a number is refused") {
    for (const char* bad : {"10.0.0.0/33", "2001:db8::/129", "10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/ 8", "10.0.0.0/8x",
                            "/8", "10.0.0/8"}) {
        INFO(bad);
        CHECK_FALSE(IpPrefix::parse(bad));
    }
    CHECK(IpPrefix::parse("10.0.0.0/33").error() == "\"10.0.0.0/33\": prefix length must be a number 0..32");
}

TEST_CASE("prefix: equality compares version, address and length") {
    CHECK_FALSE(*IpPrefix::parse("10.0.0.0/8") == *IpPrefix::parse("10.0.0.0/16"));
    CHECK_FALSE(*IpPrefix::parse("0.0.0.0/0") == *IpPrefix::parse("::/0"));
}
