// Private to mp: what the process code tells the logger (<mp/logging.hpp>).
#pragma once

#include <string>

namespace mp::detail {

// The name log lines show for this process; child_main sets it ("MainProcess" before).
void set_log_process_name(const std::string& name) noexcept;

}  // namespace mp::detail
