// mp::mpi's message transfer: see mpi_wire.hpp.
#include "mpi_wire.hpp"

#include <algorithm>
#include <stdexcept>

namespace mp::detail::mpi_wire {

void check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(rc, text, &length);
  throw std::runtime_error(std::string("mp::mpi: ") + what + ": " + std::string(text, length));
}

Comm::~Comm() {
  for (auto& send : sends_)
    for (auto& request : send.requests)
      if (request != MPI_REQUEST_NULL) MPI_Cancel(&request);
}

void Comm::post(int rank, std::string message) {
  // The first part starts with the length of the whole message.
  const std::uint64_t length = message.size();
  message.insert(0, reinterpret_cast<const char*>(&length), sizeof length);
  Send& send = sends_.emplace_back();
  send.bytes = std::move(message);
  for (std::size_t at = 0; at < send.bytes.size(); at += max_part_) {
    const auto part = static_cast<int>(std::min(max_part_, send.bytes.size() - at));
    MPI_Request request;
    check(MPI_Isend(send.bytes.data() + at, part, MPI_BYTE, rank, kTag, comm_, &request),
          "MPI_Isend");
    send.requests.push_back(request);
  }
}

bool Comm::progress() {
  bool any = false;
  while (!sends_.empty()) {
    Send& send = sends_.front();
    int done = 0;
    check(MPI_Testall(static_cast<int>(send.requests.size()), send.requests.data(), &done,
                      MPI_STATUSES_IGNORE),
          "MPI_Testall");
    if (!done) break;
    sends_.pop_front();
    any = true;
  }
  return any;
}

void Comm::flush() {
  for (auto& send : sends_)
    check(MPI_Waitall(static_cast<int>(send.requests.size()), send.requests.data(),
                      MPI_STATUSES_IGNORE),
          "MPI_Waitall");
  sends_.clear();
}

bool Comm::receive(int& source, std::string& message) {
  int flag = 0;
  MPI_Status status;
  check(MPI_Iprobe(MPI_ANY_SOURCE, kTag, comm_, &flag, &status), "MPI_Iprobe");
  if (!flag) return false;
  source = status.MPI_SOURCE;
  int count = 0;
  check(MPI_Get_count(&status, MPI_BYTE, &count), "MPI_Get_count");
  std::string first(static_cast<std::size_t>(count), '\0');
  check(MPI_Recv(first.data(), count, MPI_BYTE, source, kTag, comm_, MPI_STATUS_IGNORE),
        "MPI_Recv");
  std::uint64_t length = 0;
  if (first.size() < sizeof length) throw std::runtime_error("mp::mpi: a message too short");
  std::memcpy(&length, first.data(), sizeof length);
  message.assign(first, sizeof length);
  if (length < message.size()) throw std::runtime_error("mp::mpi: a message longer than it says");
  // The remaining parts were posted together with the first: they come next from `source`.
  while (message.size() < length) {
    check(MPI_Probe(source, kTag, comm_, &status), "MPI_Probe");
    check(MPI_Get_count(&status, MPI_BYTE, &count), "MPI_Get_count");
    const std::size_t at = message.size();
    if (static_cast<std::uint64_t>(count) > length - at)
      throw std::runtime_error("mp::mpi: a message longer than it says");
    message.resize(at + static_cast<std::size_t>(count));
    check(MPI_Recv(message.data() + at, count, MPI_BYTE, source, kTag, comm_, MPI_STATUS_IGNORE),
          "MPI_Recv");
  }
  return true;
}

}  // namespace mp::detail::mpi_wire
