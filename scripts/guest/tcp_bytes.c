/* Bulk TCP for the test guest: takes in or hands out N bytes per connection and prints their SHA-256. */
/*
 * Usage: tcp_bytes sink PORT            every connection to PORT is read to its end
 *        tcp_bytes source PORT BYTES    every connection to PORT gets BYTES pseudo-random bytes, then EOF
 * After each connection one line on stdout: "PMX RESULT tcp-sink bytes=N sha256=HEX" (or tcp-source), so
 * the peer compares the digest of what it sent or received with the guest's. Busybox's nc and wget
 * cannot count or hash what they move, hence this tool (built with gcc -static, no library beyond libc;
 * SHA-256 as in FIPS 180-4).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct sha256 {
    uint32_t state[8];
    uint64_t length;
    unsigned char block[64];
    size_t used;
};

static const uint32_t kRound[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void sha256_init(struct sha256* h) {
    static const uint32_t initial[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                        0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(h->state, initial, sizeof(initial));
    h->length = 0;
    h->used = 0;
}

static void sha256_block(struct sha256* h, const unsigned char* p) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h->state[0], b = h->state[1], c = h->state[2], d = h->state[3];
    uint32_t e = h->state[4], f = h->state[5], g = h->state[6], k = h->state[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = k + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + kRound[i] + w[i];
        uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        k = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
    }
    h->state[0] += a, h->state[1] += b, h->state[2] += c, h->state[3] += d;
    h->state[4] += e, h->state[5] += f, h->state[6] += g, h->state[7] += k;
}

static void sha256_update(struct sha256* h, const unsigned char* p, size_t n) {
    h->length += n;
    while (n > 0) {
        size_t take = 64 - h->used < n ? 64 - h->used : n;
        memcpy(h->block + h->used, p, take);
        h->used += take, p += take, n -= take;
        if (h->used == 64) {
            sha256_block(h, h->block);
            h->used = 0;
        }
    }
}

static void sha256_hex(struct sha256* h, char out[65]) {
    uint64_t bits = h->length * 8;
    unsigned char pad = 0x80, zero = 0, tail[8];
    sha256_update(h, &pad, 1);
    while (h->used != 56) sha256_update(h, &zero, 1);
    for (int i = 0; i < 8; i++) tail[i] = (unsigned char)(bits >> (56 - 8 * i));
    sha256_update(h, tail, 8);
    for (int i = 0; i < 8; i++) sprintf(out + 8 * i, "%08x", h->state[i]);
}

static int listen_on(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0), on = 1;
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)port);
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
        bind(fd, (struct sockaddr*)&addr, sizeof(addr)) != 0 || listen(fd, 4) != 0) {
        fprintf(stderr, "tcp_bytes: tcp/%d: %s\n", port, strerror(errno));
        exit(1);
    }
    return fd;
}

/* Reads the connection to its end. */
static void sink(int conn) {
    static unsigned char buf[65536];
    struct sha256 h;
    char hex[65];
    ssize_t n;
    sha256_init(&h);
    while ((n = read(conn, buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR))
        if (n > 0) sha256_update(&h, buf, (size_t)n);
    const uint64_t total = h.length;
    sha256_hex(&h, hex);
    printf("PMX RESULT tcp-sink bytes=%llu sha256=%s%s\n", (unsigned long long)total, hex, n < 0 ? " error" : "");
}

/* Writes BYTES bytes of a xorshift sequence (different for every connection), then closes its side. */
static void source(int conn, unsigned long long bytes, uint64_t seed) {
    static unsigned char buf[65536];
    struct sha256 h;
    char hex[65];
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
    unsigned long long left = bytes;
    int failed = 0;
    sha256_init(&h);
    while (left > 0 && !failed) {
        size_t chunk = left < sizeof(buf) ? (size_t)left : sizeof(buf);
        for (size_t i = 0; i < chunk; i += 8) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            memcpy(buf + i, &x, chunk - i < 8 ? chunk - i : 8);
        }
        for (size_t off = 0; off < chunk;) {
            ssize_t n = write(conn, buf + off, chunk - off);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                failed = 1;
                break;
            }
            sha256_update(&h, buf + off, (size_t)n);
            off += (size_t)n;
        }
        left -= chunk;
    }
    shutdown(conn, SHUT_WR);
    const uint64_t total = h.length;
    sha256_hex(&h, hex);
    printf("PMX RESULT tcp-source bytes=%llu sha256=%s%s\n", (unsigned long long)total, hex, failed ? " error" : "");
}

int main(int argc, char** argv) {
    const int is_sink = argc == 3 && strcmp(argv[1], "sink") == 0;
    const int is_source = argc == 4 && strcmp(argv[1], "source") == 0;
    if (!is_sink && !is_source) {
        fprintf(stderr, "usage: tcp_bytes sink PORT | tcp_bytes source PORT BYTES\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    int fd = listen_on(atoi(argv[2]));
    for (uint64_t connections = 0;; connections++) {
        int conn = accept(fd, NULL, NULL);
        if (conn < 0) {
            if (errno == EINTR) continue;
            perror("tcp_bytes: accept");
            return 1;
        }
        if (is_sink) sink(conn);
        else source(conn, strtoull(argv[3], NULL, 10), connections);
        close(conn);
    }
}
