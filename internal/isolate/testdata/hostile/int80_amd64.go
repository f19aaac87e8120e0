package main

// int80 makes a 32-bit (i386 ABI) system call through int 0x80.
func int80(nr uintptr) uintptr

const haveInt80 = true
