#include "options.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <string_view>
#include <system_error>

#include <mp/context.hpp>

#include "functions.hpp"
#include "text.hpp"

#ifndef MP_MAP_VERSION
#error "MP_MAP_VERSION: the project's version, defined by tools/mp-map/CMakeLists.txt"
#endif

namespace mp_map {
namespace {

// The start methods this build of mp offers, joined by `last` before the last one.
std::string start_method_choices(const char* last) {
  const std::vector<std::string> methods = mp::get_all_start_methods();
  std::string out;
  for (std::size_t i = 0; i < methods.size(); ++i) {
    if (i != 0) out += i + 1 == methods.size() ? last : ", ";
    out += methods[i];
  }
  return out;
}

void usage(std::FILE* out) {
  std::fprintf(out,
               "usage: mp-map [OPTIONS] FUNCTION [::: ITEM...]\n"
               "       mp-map [OPTIONS] --exec 'COMMAND {}' [::: ITEM...]\n"
               "\nApplies FUNCTION (or COMMAND) to every item in a pool of worker processes.\n"
               "Items are the arguments after ::: or else the lines of standard input;\n"
               "results go to standard output, one per line, in input order.\n"
               "\nfunctions:\n");
  for (const auto& f : functions())
    std::fprintf(out, "  %-14s %.*s\n", std::string(f.name).c_str(),
                 static_cast<int>(f.summary.size()), f.summary.data());
  std::fprintf(out,
               "\noptions:\n"
               "  --exec 'CMD {}'      run CMD per item ({} is the item, quoted; appended if\n"
               "                       absent); its stdout is the result, a non-zero exit a "
               "failure;\n"
               "                       leave {} unquoted ('rm -- {}', not \"rm '{}'\"), with -- "
               "before it\n"
               "                       if an item may start with '-'; nothing CMD starts "
               "outlives mp-map\n"
               "  -j, --jobs N         worker processes (default: the number of CPUs; at most "
               "1024)\n"
               "  --chunksize N        items per task (default: as Pool.map; 1 with --exec or "
               "--timeout)\n"
               "  --unordered          print results as they complete\n"
               "  --timeout SECONDS    per item: an overdue item fails, its worker is replaced\n"
               "  --keep-going         go on after a failed item (the default)\n"
               "  --halt-on-error      stop at the first failed item\n"
               "  --progress, --no-progress\n"
               "                       progress on stderr (default: when stderr is a "
               "terminal)\n"
               "  --format FORMAT      plain (default), tsv (input, output, ok, error) or jsonl\n"
               "                       (plain writes outputs as they are, control bytes and all)\n"
               "  --start-method M     %s (default: %s)\n"
               "  --mpi                run the workers on the other ranks of an MPI job\n"
               "                       (mpirun -n 4 mp-map --mpi FUNCTION)\n"
               "  -h, --help           show this help\n"
               "  --version            show the version\n"
               "\nResults are printed as soon as they are complete and next in order, while\n"
               "the input is still arriving. SIGINT, SIGTERM and SIGHUP print the complete\n"
               "results first, then end mp-map by that signal.\n"
               "\nExit status: 0 if every item succeeded, 1 if any failed or the output could "
               "not\nbe written, 2 for a usage error, 128+N after signal N.\n",
               start_method_choices(" or ").c_str(), mp::get_start_method()->c_str());
}

std::size_t parse_count(const std::string& name, const std::string& text, std::size_t max) {
  std::size_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || value == 0 ||
      value > max)
    throw UsageError{name + " needs a whole number between 1 and " + std::to_string(max) +
                     ", got '" + shown(text) + "'"};
  return value;
}

unsigned parse_jobs(const std::string& name, const std::string& text) {
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (!text.empty() && end == text.data() + text.size() &&
      (ec == std::errc::result_out_of_range || (ec == std::errc() && value > kMaxJobs)))
    throw UsageError{name + ": at most " + std::to_string(kMaxJobs) + " worker processes, got " +
                     text};
  return static_cast<unsigned>(parse_count(name, text, kMaxJobs));
}

double parse_timeout(const std::string& text) {
  double seconds = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), seconds);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() ||
      !std::isfinite(seconds) || seconds <= 0 || seconds > 1e6)
    throw UsageError{"--timeout needs a number of seconds above 0, got '" + shown(text) + "'"};
  return seconds;
}

Format parse_format(const std::string& format) {
  if (format == "plain") return Format::plain;
  if (format == "tsv") return Format::tsv;
  if (format == "jsonl") return Format::jsonl;
  throw UsageError{"--format must be plain, tsv or jsonl, got '" + shown(format) + "'"};
}

std::string parse_start_method(const std::string& method) {
  const std::vector<std::string> methods = mp::get_all_start_methods();
  if (std::find(methods.begin(), methods.end(), method) == methods.end())
    throw UsageError{"--start-method must be " + start_method_choices(" or ") + ", got '" +
                     shown(method) + "'"};
  return method;
}

// One option: its names, whether it takes a value, and what it does with it (`name` is
// the name it was given as, for messages).
struct OptionSpec {
  const char* short_name;  // or nullptr
  const char* long_name;
  bool takes_value;
  void (*apply)(Options& options, const std::string& name, const std::string& value);
};

const OptionSpec kOptions[] = {
    {"-h", "--help", false,
     [](Options&, const std::string&, const std::string&) {
       usage(stdout);
       throw ExitNow{0};
     }},
    {nullptr, "--version", false,
     [](Options&, const std::string&, const std::string&) {
       std::printf("mp-map %s\n", MP_MAP_VERSION);
       throw ExitNow{0};
     }},
    {"-j", "--jobs", true,
     [](Options& o, const std::string& name, const std::string& value) {
       o.jobs = parse_jobs(name, value);
     }},
    {nullptr, "--chunksize", true,
     [](Options& o, const std::string& name, const std::string& value) {
       o.chunksize = parse_count(name, value, std::size_t{1} << 24);
     }},
    {nullptr, "--unordered", false,
     [](Options& o, const std::string&, const std::string&) { o.unordered = true; }},
    {nullptr, "--timeout", true,
     [](Options& o, const std::string&, const std::string& value) {
       o.timeout = parse_timeout(value);
     }},
    {nullptr, "--keep-going", false,
     [](Options& o, const std::string&, const std::string&) { o.halt_on_error = false; }},
    {nullptr, "--halt-on-error", false,
     [](Options& o, const std::string&, const std::string&) { o.halt_on_error = true; }},
    {nullptr, "--progress", false,
     [](Options& o, const std::string&, const std::string&) { o.progress = true; }},
    {nullptr, "--no-progress", false,
     [](Options& o, const std::string&, const std::string&) { o.progress = false; }},
    {nullptr, "--format", true,
     [](Options& o, const std::string&, const std::string& value) {
       o.format = parse_format(value);
     }},
    {nullptr, "--start-method", true,
     [](Options& o, const std::string&, const std::string& value) {
       o.start_method = parse_start_method(value);
     }},
    {nullptr, "--mpi", false,
     [](Options& o, const std::string&, const std::string&) {
#ifdef MP_MAP_MPI
       o.start_method = "mpi";
#else
       (void)o;
       throw UsageError{"--mpi: this mp-map was built without MPI"};
#endif
     }},
    {nullptr, "--exec", true,
     [](Options& o, const std::string&, const std::string& value) { o.exec = value; }},
};

const OptionSpec* find_option(const std::string& name) {
  for (const OptionSpec& spec : kOptions)
    if (name == spec.long_name || (spec.short_name && name == spec.short_name)) return &spec;
  return nullptr;
}

// The function (or --exec's command) and the positional arguments fit together.
void check_positional(Options& options, const std::vector<std::string>& positional) {
  if (options.exec) {
    if (!positional.empty())
      throw UsageError{"--exec takes the command as its value; unexpected '" +
                       shown(positional[0]) + "' (put items after :::)"};
    return;
  }
  if (positional.empty()) throw UsageError{"no function given (or --exec 'COMMAND {}')"};
  if (positional.size() > 1)
    throw UsageError{"one function only; unexpected '" + shown(positional[1]) +
                     "' (put items after :::)"};
  options.function = positional[0];
  if (!find_function(options.function))
    throw UsageError{"unknown function '" + shown(options.function) + "' (see mp-map --help)"};
}

}  // namespace

Options parse_options(int argc, char** argv) {
  Options options;
  std::vector<std::string> args(argv + 1, argv + argc);
  std::vector<std::string> positional;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == ":::") {
      options.arguments.emplace(args.begin() + static_cast<std::ptrdiff_t>(i) + 1, args.end());
      break;
    }
    std::string name = arg, value;
    bool has_value = false;
    if (arg.rfind("--", 0) == 0 && arg.find('=') != std::string::npos) {
      name = arg.substr(0, arg.find('='));
      value = arg.substr(arg.find('=') + 1);
      has_value = true;
    } else if (arg.rfind("-j", 0) == 0 && arg.size() > 2 && arg[2] != '-') {
      name = "-j";  // -j8
      value = arg.substr(2);
      has_value = true;
    }
    const OptionSpec* spec = find_option(name);
    if (!spec) {
      if (arg.size() > 1 && arg[0] == '-') throw UsageError{"unknown option '" + shown(arg) + "'"};
      positional.push_back(arg);
      continue;
    }
    if (spec->takes_value && !has_value) {
      if (i + 1 >= args.size()) throw UsageError{name + " needs a value"};
      value = args[++i];
    } else if (!spec->takes_value && has_value) {
      throw UsageError{name + " takes no value"};
    }
    spec->apply(options, name, value);
  }
  check_positional(options, positional);
  return options;
}

}  // namespace mp_map
