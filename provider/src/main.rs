fn main() -> std::process::ExitCode {
    pullcred::cli::main()
}
