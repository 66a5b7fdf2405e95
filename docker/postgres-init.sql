-- One database per device: each device keeps its own copy of the library (DESIGN.md).
create database device_a;
create database device_b;
create database device_c;
