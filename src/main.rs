fn main() {
    std::process::exit(rxtxcpu::main_with_args(std::env::args_os().collect()));
}
