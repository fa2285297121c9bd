/* UDP responder for the test guest: answers every datagram with the guest's name, port and the sender. */
/*
 * Usage: udp_echo NAME PORT...
 * Busybox has no UDP server, so the guest's initramfs carries this, built with gcc -static. Each reply is
 * one line, "NAME answered udp/PORT (peer A.B.C.D:P)", so a client can tell which guest received it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_PORTS 16

int main(int argc, char** argv) {
    if (argc < 3 || argc - 2 > MAX_PORTS) {
        fprintf(stderr, "usage: udp_echo NAME PORT... (at most %d ports)\n", MAX_PORTS);
        return 2;
    }
    const char* name = argv[1];
    struct pollfd fds[MAX_PORTS];
    int ports[MAX_PORTS];
    int count = argc - 2;
    for (int i = 0; i < count; i++) {
        ports[i] = atoi(argv[i + 2]);
        int fd = socket(AF_INET, SOCK_DGRAM, 0);
        struct sockaddr_in addr;
        memset(&addr, 0, sizeof(addr));
        addr.sin_family = AF_INET;
        addr.sin_port = htons((unsigned short)ports[i]);
        addr.sin_addr.s_addr = htonl(INADDR_ANY);
        if (fd < 0 || bind(fd, (struct sockaddr*)&addr, sizeof(addr)) != 0) {
            fprintf(stderr, "udp_echo: udp/%d: %s\n", ports[i], strerror(errno));
            return 1;
        }
        fds[i].fd = fd;
        fds[i].events = POLLIN;
    }
    for (;;) {
        if (poll(fds, (nfds_t)count, -1) < 0) {
            if (errno == EINTR) continue;
            perror("udp_echo: poll");
            return 1;
        }
        for (int i = 0; i < count; i++) {
            if (!(fds[i].revents & POLLIN)) continue;
            char buf[2048];
            struct sockaddr_in peer;
            socklen_t len = sizeof(peer);
            if (recvfrom(fds[i].fd, buf, sizeof(buf), 0, (struct sockaddr*)&peer, &len) < 0) continue;
            char reply[256];
            char ip[INET_ADDRSTRLEN];
            inet_ntop(AF_INET, &peer.sin_addr, ip, sizeof(ip));
            int n = snprintf(reply, sizeof(reply), "%s answered udp/%d (peer %s:%d)\n", name, ports[i], ip,
                             ntohs(peer.sin_port));
            sendto(fds[i].fd, reply, (size_t)n, 0, (struct sockaddr*)&peer, len);
        }
    }
}
