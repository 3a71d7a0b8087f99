#!/bin/sh
# Writes the hand-made seeds the frame and session_input corpora started from (the committed
# corpus is the fuzzers' minimised output). Frame layout: VER CMD LEN(u16 LE) SID(u32 LE) DATA.
# frame/ inputs start with 2 bytes seeding the fragmentation; session_input/ inputs with a
# config byte (bit 0 server, bit 1 v2, bits 2-3 sizes, bit 4 keepalive off) and a seed byte.
set -e
cd "$(dirname "$0")/corpus"
mkdir -p frame session_input

syn() { printf "\\$1\\000\\000\\000\\$2\\000\\000\\000"; }   # version, sid (octal)
fin() { printf "\\$1\\001\\000\\000\\$2\\000\\000\\000"; }
nop() { printf "\\$1\\003\\000\\000\\000\\000\\000\\000"; }
psh() { printf "\\$1\\002\\005\\000\\$2\\000\\000\\000hello"; }
upd() { printf "\\002\\004\\010\\000\\$1\\000\\000\\000\\$2\\000\\000\\000\\000\\000\\004\\000"; } # sid, consumed; window 256 KiB

{ printf '\000\000'; syn 001 003; } > frame/v1-syn
{ printf '\001\000'; psh 001 003; } > frame/v1-psh
{ printf '\002\000'; nop 001; } > frame/v1-nop
{ printf '\003\000'; syn 001 003; psh 001 003; fin 001 003; nop 001; } > frame/v1-all
{ printf '\004\000'; syn 002 003; } > frame/v2-syn
{ printf '\005\000'; upd 003 005; } > frame/v2-upd
{ printf '\006\000'; nop 002; } > frame/v2-nop
{ printf '\007\001'; syn 002 003; psh 002 003; upd 003 005; fin 002 003; nop 002; } > frame/v2-all

{ printf '\000\001'; syn 001 002; psh 001 002; fin 001 002; nop 001; } > session_input/client-v1
{ printf '\001\002'; syn 001 003; psh 001 003; syn 001 005; psh 001 005; fin 001 003; } > session_input/server-v1
{ printf '\002\003'; syn 002 002; psh 002 002; upd 002 000; fin 002 002; nop 002; } > session_input/client-v2
{ printf '\007\004'; syn 002 003; psh 002 003; upd 003 000; syn 002 005; psh 002 005; } > session_input/server-v2-small
{ printf '\014\005'; syn 001 002; psh 001 002; syn 001 004; psh 001 004; fin 001 002; } > session_input/client-v1-tiny
{ printf '\032\006'; syn 002 002; psh 002 002; psh 002 002; upd 002 000; fin 002 002; } > session_input/client-v2-medium-nokeepalive
